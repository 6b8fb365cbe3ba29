#!/usr/bin/env bash
# Makes the files of a keel cluster's mutual TLS (include/keel/tls.h, docs/operations.md):
#   scripts/tls-certs.sh DIR [--name NAME] [--nodes N] [--days D]
# DIR/ca.pem, ca-key.pem        the cluster's CA (keep ca-key.pem off the nodes)
# DIR/nodeI.pem, nodeI-key.pem  for I = 1..N (default 3): signed by the CA, naming NAME (default
#                               keel) as a DNS subjectAltName, for serving and for connecting
# DIR/client.pem, client-key.pem  a client's (the keel tool's): signed by the CA
# Keys are ECDSA P-256, unencrypted; certificates last D days (default 825). Needs openssl.
# Files that exist are kept: run again with a larger --nodes to sign the certificates of new
# nodes with the same CA.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DIR [--name NAME] [--nodes N] [--days D]" >&2; exit 2; }
dir=$1; shift
name=keel; nodes=3; days=825
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$dir"
cd "$dir"
umask 077
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
if [ ! -e ca.pem ] || [ ! -e ca-key.pem ]; then
  key ca-key.pem
  openssl req -x509 -new -key ca-key.pem -out ca.pem -days "$days" -subj "/CN=keel CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
fi
# sign BASE CN EXTENSIONS: BASE-key.pem and BASE.pem, signed by the CA (unless BASE.pem exists).
sign() {
  [ -e "$1.pem" ] && return 0
  key "$1-key.pem"
  openssl req -new -key "$1-key.pem" -out "$1.csr" -subj "/CN=$2"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out "$1.pem" \
    -days "$days" -extfile <(printf '%b' "$3") 2>/dev/null
  rm -f "$1.csr"
}
for i in $(seq 1 "$nodes"); do
  sign "node$i" "$name node $i" "subjectAltName=DNS:$name\nextendedKeyUsage=serverAuth,clientAuth"
done
sign client "keel client" "extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 644 ./*.pem
chmod 600 ./*-key.pem
echo "$dir: ca.pem, node1..$nodes.pem, client.pem (and their -key.pem), naming $name"
