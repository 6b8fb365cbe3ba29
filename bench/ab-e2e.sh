#!/usr/bin/env bash
# A/B of two revisions of keel-server + keel on W4 (shared/bench/WORKLOADS.md): what one change
# gained. Builds both revisions (Release, in build/ab-<commit>), then alternates them: each run
# starts a fresh 3-node durable cluster on 127.0.0.1, runs `keel bench` (writes, then
# linearizable reads) and stops it. Prints the median ops/s, p99 and maximum latency of each
# side and the ratio of the medians of ops/s, and the CPU each op cost the servers (from
# /proc/PID/stat over the measured run): node_us, the busiest node's (the leader's), and
# servers_us, the three nodes' together; on this noisy VM they move less than ops/s do.
# --resp adds redis-benchmark SET (C connections, distinct random keys) on the leader's RESP
# port as a third op; --follower-get adds redis-benchmark GET on a follower's RESP port
# (linearizable reads through a follower, of random keys among 20000 after 20000 SETs of them).
# --preload K first writes K keys (16-byte values) to each fresh cluster, so that the measured
# load runs on a large state; --server-flags "..." go to every node of both sides. --tls-new runs
# NEW's side with mutual TLS (certificates from scripts/tls-certs.sh, for the nodes, `keel`, and
# with --resp or --follower-get the RESP port too: --redis-tls, redis-benchmark --tls): BASE =
# NEW measures what TLS costs.
#
#   bench/ab-e2e.sh BASE [NEW] [--clients C] [--connections M] [--ops N] [--reps R] [--preload K]
#                   [--resp] [--follower-get] [--server-flags "FLAGS"] [--tls-new] [--write-docs]
#
# --write-docs puts the result in docs/benchmarks.md, in a section of its own for this pair (and
# this C and preload, other than 64 and 0).
# NEW defaults to the working tree's HEAD. Both sides are loaded by their own `keel`, so a
# change to the client library counts; pass --connections the same for both (an old `keel`
# without --connections needs --connections 0). Ports 29100-29130.
usage_lines=2,24  # the lines above, from the second
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
base="" new=HEAD clients=64 conns=4 ops=40000 reps=5 preload=0 server_flags="" write_docs=0 resp=0 fget=0 tls_new=0
args_given=$(printf "%q " "$@"); args_given=${args_given% }
pos=()
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --ops) ops=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --preload) preload=$2; shift 2 ;;
    --server-flags) server_flags=$2; shift 2 ;;
    --write-docs) write_docs=1; shift ;;
    --resp) resp=1; shift ;;
    --follower-get) fget=1; shift ;;
    --tls-new) tls_new=1; shift ;;
    -*) sed -n "${usage_lines}p" "$0" >&2; exit 2 ;;
    *) pos+=("$1"); shift ;;
  esac
done
[ ${#pos[@]} -ge 1 ] || { sed -n "${usage_lines}p" "$0" >&2; exit 2; }
base=${pos[0]}
[ ${#pos[@]} -ge 2 ] && new=${pos[1]}
. scripts/deps.sh
keel_install_deps

build_rev() {  # rev -> prints the build directory
  local rev c dir wt
  rev=$(git rev-parse --verify "$1^{commit}")
  c=${rev:0:10}
  dir=$root/build/ab-$c
  if [ ! -x "$dir/apps/keel-server" ] || [ ! -x "$dir/apps/keel" ]; then
    wt=$(mktemp -d /tmp/keel-ab.XXXXXX)
    git worktree add --detach "$wt" "$rev" >/dev/null 2>&1
    cmake -S "$wt" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEEL_BENCH=OFF -DKEEL_FAULTS=OFF >/dev/null
    ninja -C "$dir" -j "${KEEL_JOBS:-2}" keel-server keel >&2
    git worktree remove --force "$wt"
  fi
  echo "$dir"
}
echo "==== building $base and $new" >&2
bdir_a=$(build_rev "$base")
bdir_b=$(build_rev "$new")

work=$(mktemp -d /tmp/keel-ab-run.XXXXXX)
pids=()
stop() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  node_pid=()
}
trap 'stop; rm -rf "$work"' EXIT
[ "$tls_new" = 1 ] && scripts/tls-certs.sh "$work/tls" >/dev/null
port=29100
# bench/lib.sh: leader(), rport() and cpu_ticks() over node_pid, node i on base+i (run_once sets
# `base` locally: here it names the base revision).
declare -A node_pid
. bench/lib.sh
peers="1=127.0.0.1:$((port + 1)),2=127.0.0.1:$((port + 2)),3=127.0.0.1:$((port + 3))"
cluster="127.0.0.1:$((port + 1)),127.0.0.1:$((port + 2)),127.0.0.1:$((port + 3))"

run_once() {  # build op side(a|b) -> "ops p99_ms max_ms node_us servers_us"
  local b=$1 op=$2 side=$3 i extra="" connflag=() before=() out="" l respflag=() base=$port tls=() keel
  rm -rf "$work/data"; mkdir -p "$work/data"
  local t=$work/tls
  [ "$side" = b ] && [ "$tls_new" = 1 ] && tls=(--tls-cert "$t/client.pem" --tls-key "$t/client-key.pem" --tls-ca "$t/ca.pem")
  keel=("$b/apps/keel" "${tls[@]}")
  rcli_tls=()  # bench/lib.sh's redis-cli, and redis-benchmark here
  [ ${#tls[@]} -gt 0 ] && rcli_tls=(--tls --cert "$t/client.pem" --key "$t/client-key.pem" --cacert "$t/ca.pem")
  for i in 1 2 3; do
    # The RESP port only when asked for: revisions before it know no --redis-listen.
    [ "$resp" = 1 ] || [ "$fget" = 1 ] && respflag=(--redis-listen "127.0.0.1:$((port + 10 + i))")
    local nodetls=()
    [ ${#tls[@]} -gt 0 ] && nodetls=(--tls-cert "$t/node$i.pem" --tls-key "$t/node$i-key.pem" --tls-ca "$t/ca.pem")
    [ ${#tls[@]} -gt 0 ] && [ ${#respflag[@]} -gt 0 ] && nodetls+=(--redis-tls true)
    "$b/apps/keel-server" --id "$i" --data-dir "$work/data/n$i" --listen "127.0.0.1:$((port + i))" \
      --peers "$peers" "${respflag[@]}" "${nodetls[@]}" --tick-ms 50 --election-ticks 10 --quiet true $server_flags >/dev/null 2>&1 &
    pids+=($!)
    node_pid[$i]=$!
  done
  # Ready once a write succeeds.
  for _ in $(seq 100); do
    "${keel[@]}" --cluster "$cluster" put ab-ready 1 >/dev/null 2>&1 && break
    sleep 0.1
  done
  [ "$op" = read ] && extra=--reads
  [ "$conns" != 0 ] && connflag=(--connections "$conns")
  if [ "$preload" != 0 ]; then
    timeout 600 "${keel[@]}" --cluster "$cluster" bench --clients 256 "${connflag[@]}" --count "$preload" \
      --value-size 16 >/dev/null 2>&1 || true
  fi
  if [ "$op" = read ]; then  # the keys the reads ask for exist
    timeout 300 "${keel[@]}" --cluster "$cluster" bench --clients "$clients" "${connflag[@]}" --count $((clients * 100)) \
      --value-size 16 >/dev/null 2>&1 || true
  fi
  if [ "$op" = resp ] || [ "$op" = fget ]; then l=$(leader); fi
  if [ "$op" = fget ] && [ -n "$l" ]; then  # the keys the reads ask for exist
    redis-benchmark "${rcli_tls[@]}" -p "$(rport "$l")" -t set -c 64 -n 20000 -d 16 -r 20000 -q >/dev/null 2>&1
  fi
  for i in 0 1 2; do before+=("$(cpu_ticks "${pids[$i]}")"); done
  if [ "$op" = fget ]; then
    [ -n "$l" ] && out=$(timeout 300 redis-benchmark "${rcli_tls[@]}" -p "$(rport $((l % 3 + 1)))" -t get -c "$clients" -n "$ops" -d 16 -r 20000 \
                           --csv 2>/dev/null | redis_csv GET | awk '$1 != "-" {print $1, $3, $4}')
  elif [ "$op" = resp ]; then
    [ -n "$l" ] && out=$(timeout 300 redis-benchmark "${rcli_tls[@]}" -p "$(rport "$l")" -t set -c "$clients" -n "$ops" -d 16 -r 100000000 \
                           --csv 2>/dev/null | redis_csv SET | awk '$1 != "-" {print $1, $3, $4}')
  else
    out=$(timeout 300 "${keel[@]}" --cluster "$cluster" --json bench --clients "$clients" "${connflag[@]}" --count "$ops" \
            --value-size 16 $extra 2>/dev/null |
            python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.0f %.3f %.3f" % (d["ops_per_sec"], d["p99_us"]/1000, d["max_us"]/1000))')
  fi
  local used=() hz
  hz=$(getconf CLK_TCK)
  if [ -z "$out" ]; then stop; echo; return 0; fi  # no result: left out of the medians
  for i in 0 1 2; do used+=($(( $(cpu_ticks "${pids[$i]}") - before[i] ))); done
  python3 -c 'import sys; u = [int(x) for x in sys.argv[3:]]; n, hz = int(sys.argv[1]), int(sys.argv[2])
print("%.2f %.2f" % (max(u) * 1e6 / hz / n, sum(u) * 1e6 / hz / n))' "$ops" "$hz" "${used[@]}" | sed "s/^/$out /"
  stop
}

results=""
ops_list="write read"
[ "$resp" = 1 ] && ops_list="$ops_list resp"
[ "$fget" = 1 ] && ops_list="$ops_list fget"
for op in $ops_list; do
  a=() b=()
  for r in $(seq "$reps"); do
    if [ $((r % 2)) = 1 ]; then
      a+=("$(run_once "$bdir_a" "$op" a)"); b+=("$(run_once "$bdir_b" "$op" b)")
    else
      b+=("$(run_once "$bdir_b" "$op" b)"); a+=("$(run_once "$bdir_a" "$op" a)")
    fi
  done
  line=$(python3 - "$op" "$clients" "$base" "$new" "$reps" <<EOF
import statistics, sys
op, c, base, new, reps = sys.argv[1:]
a = [tuple(map(float, l.split())) for l in """$(printf '%s\n' "${a[@]}")""".split("\n") if l.strip()]
b = [tuple(map(float, l.split())) for l in """$(printf '%s\n' "${b[@]}")""".split("\n") if l.strip()]
# Medians of each column (ops, p99, max, node_us, servers_us), base then new.
(ma, mb), (pa, pb), (xa, xb), (na, nb), (sa, sb) = (
    (statistics.median(x[k] for x in a), statistics.median(x[k] for x in b)) for k in range(5))
print("RESULT ab op=%s clients=%s base=%s new=%s base_ops=%.0f new_ops=%.0f ratio=%.2f base_p99_ms=%.2f new_p99_ms=%.2f base_max_ms=%.1f new_max_ms=%.1f base_node_us=%.2f new_node_us=%.2f base_servers_us=%.2f new_servers_us=%.2f reps=%s"
      % (op, c, base, new, ma, mb, mb / ma, pa, pb, xa, xb, na, nb, sa, sb, reps))
print("  runs base: " + ", ".join("%.0f" % x[0] for x in a) + "; new: " + ", ".join("%.0f" % x[0] for x in b))
EOF
)
  echo "$line"
  results+="$line"$'\n'
done
if [ "$write_docs" = 1 ]; then
  . scripts/doc-section.sh
  nb=$(git rev-parse --short "$base") nn=$(git rev-parse --short "$new")
  subjects=$(git log --first-parent -n 20 --format='%h %s' "$nb..$nn")
  # One section per pair and load: runs at several C (or preloads) keep their own.
  key="ab-$nb-$nn"
  if [ "$clients" != 64 ] || [ "$preload" != 0 ]; then key="$key-c$clients"; fi
  if [ "$preload" != 0 ]; then key="$key-p$preload"; fi
  keel_write_doc_section docs/benchmarks.md "$key" "$(printf '### A/B %s -> %s (W4, C=%s)\n\nCommand: `bench/ab-e2e.sh %s` (%s %s UTC, %s cores, load average %s at the end).\nThe commits between them:\n\n```\n%s\n```\n\n```\n%s```' \
    "$nb" "$nn" "$clients" "$args_given" "$(date -u +%Y-%m-%d)" "$(date -u +%H:%M)" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)" "$subjects" "$results")"
  echo "wrote docs/benchmarks.md" >&2
fi
