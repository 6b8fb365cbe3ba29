#!/usr/bin/env bash
# Resident memory of a node holding N keys (default 1M) with 16-byte values: keel against etcd.
#   keel   3 durable keel-server nodes (Release, SegmentedLog, default flags), loaded by
#          `keel bench` (distinct keys bench/<client>/<n>, one write per key)
#   etcd   3 etcd members (Debian's etcd-server, default flags as in ../shared/peers/etcd-kv),
#          loaded by that peer's load generator (distinct keys key<client>_<n>, one Put per key)
# VmRSS (from /proc/PID/status) of the leader and the followers after loading; for keel also
# after `keel snapshot` on every node (snapshot and compact now), and after a restart of a
# follower (its state restored from the snapshot).
#
#   bench/compare-memory.sh [--keys 1000000] [--clients 64] [--no-etcd] [--write-docs]
#
# Ports: keel 127.0.0.1:27451-27453 (RESP 27461-27463); etcd 127.0.0.1:2747{1,2,3} (clients)
# and 2748{1,2,3} (peers). KEEL_MEM_PORT moves keel's.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
keys=1000000
clients=64
etcd=1
write_docs=0
args_given="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) keys=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --no-etcd) etcd=0; shift ;;
    --write-docs) write_docs=1; shift ;;
    *) sed -n '2,16p' "$0" >&2; exit 2 ;;
  esac
done
. scripts/deps.sh
keel_install_deps

build=${KEEL_MEM_BUILD:-build/recovery-release}
echo "==== building keel-server and keel (Release) in $build" >&2
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEEL_BENCH=ON -DKEEL_FAULTS=OFF >/dev/null
ninja -C "$build" -j "${KEEL_JOBS:-2}" keel-server keel >&2
server=$build/apps/keel-server
keel=$build/apps/keel

work=$(mktemp -d /tmp/keel-mem.XXXXXX)
declare -A node_pid
etcd_pids=()
cleanup() {
  for p in "${node_pid[@]}" "${etcd_pids[@]}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
base=${KEEL_MEM_PORT:-27450}
. bench/lib.sh
peers_flag="1=$(addr 1),2=$(addr 2),3=$(addr 3)"
cluster="$(addr 1),$(addr 2),$(addr 3)"
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mb() { python3 -c "print('%.1f' % ($1 / 1024))"; }

start_node() {
  local i=$1
  "$server" --id "$i" --data-dir "$work/n$i" --listen "$(addr "$i")" --peers "$peers_flag" \
    --redis-listen "127.0.0.1:$(rport "$i")" --quiet true >>"$work/n$i.log" 2>&1 &
  node_pid[$i]=$!
}
# "leader_mb follower_mb follower_mb" for keel, by pid.
keel_rss() {
  local l=$1 out i
  out="$(mb "$(rss_kb "${node_pid[$l]}")")"
  for i in 1 2 3; do [ "$i" = "$l" ] || out="$out $(mb "$(rss_kb "${node_pid[$i]}")")"; done
  echo "$out"
}

# ---- keel ----
for i in 1 2 3; do start_node "$i"; done
L=$(wait_leader compare-memory)
echo "==== keel: loading $keys keys with 16-byte values ($clients clients)" >&2
keel_idle=$(keel_rss "$L")
"$keel" --cluster "$cluster" --timeout 30000 bench --clients "$clients" --count "$keys" --value-size 16 >&2
sleep 2
size=$(redis-cli -p "$(rport "$L")" DBSIZE)
keel_loaded=$(keel_rss "$L")
echo "  keel: $size keys; RSS leader/followers after loading: $keel_loaded MB" >&2
"$keel" --cluster "$cluster" --timeout 600000 snapshot >/dev/null
sleep 1
keel_snap=$(keel_rss "$L")
echo "  keel: after snapshot: $keel_snap MB" >&2
F=$(( L % 3 + 1 ))
kill "${node_pid[$F]}"; wait "${node_pid[$F]}" 2>/dev/null || true
start_node "$F"
for _ in $(seq 1200); do
  [ "$(timeout 2 redis-cli -p "$(rport "$F")" GET mem-ready 2>/dev/null)" = 1 ] && break
  sleep 0.05
done
sleep 1
keel_restart=$(mb "$(rss_kb "${node_pid[$F]}")")
echo "  keel: restarted follower n$F: $keel_restart MB" >&2
for i in 1 2 3; do kill "${node_pid[$i]}" 2>/dev/null || true; wait "${node_pid[$i]}" 2>/dev/null || true; node_pid[$i]=""; done

# ---- etcd ----
etcd_loaded="- - -"
etcd_keys="-"
if [ "$etcd" = 1 ]; then
  peer=$root/../shared/peers/etcd-kv
  loadbin=${ETCD_PEER_BUILD:-/tmp/etcd-kv-peer}/etcdload
  if [ ! -x "$loadbin" ]; then
    # The peer's run.sh installs etcd and builds its load generator (a tiny run against its own cluster).
    "$peer/run.sh" -clients 1 -n 10 >/dev/null
  fi
  ecluster="e1=http://127.0.0.1:27481,e2=http://127.0.0.1:27482,e3=http://127.0.0.1:27483"
  for i in 1 2 3; do
    etcd --name e$i --data-dir "$work/e$i" \
      --listen-client-urls http://127.0.0.1:2747$i --advertise-client-urls http://127.0.0.1:2747$i \
      --listen-peer-urls http://127.0.0.1:2748$i --initial-advertise-peer-urls http://127.0.0.1:2748$i \
      --initial-cluster "$ecluster" --initial-cluster-state new --log-level error >"$work/e$i.log" 2>&1 &
    etcd_pids+=($!)
  done
  for _ in $(seq 100); do
    curl -fs http://127.0.0.1:27471/health 2>/dev/null | grep -q true && break
    sleep 0.2
  done
  echo "==== etcd: loading $keys keys with 16-byte values ($clients clients)" >&2
  "$loadbin" -endpoints 127.0.0.1:27471,127.0.0.1:27472,127.0.0.1:27473 -clients "$clients" -n "$keys" -vsize 16 >&2
  sleep 2
  # The leader: the member whose /v2/stats/self says StateLeader.
  el=""
  for i in 1 2 3; do
    curl -fs http://127.0.0.1:2747$i/v2/stats/self 2>/dev/null | grep -q StateLeader && el=$i
  done
  [ -n "$el" ] || el=1
  etcd_loaded="$(mb "$(rss_kb "${etcd_pids[$((el - 1))]}")")"
  for i in 1 2 3; do [ "$i" = "$el" ] || etcd_loaded="$etcd_loaded $(mb "$(rss_kb "${etcd_pids[$((i - 1))]}")")"; done
  etcd_keys=$(curl -fs -X POST http://127.0.0.1:27471/v3/kv/range -d '{"key":"AA==","range_end":"AA==","count_only":true}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("count","?"))' 2>/dev/null || echo "?")
  echo "  etcd: $etcd_keys keys; RSS leader/followers: $etcd_loaded MB" >&2
fi

report() {
  echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; $keys distinct keys, 16-byte values, $clients clients, one write per key"
  echo "# keel: 3 nodes, Release, default flags (--snapshot-entries 20000, --snapshot-log-ratio 2); etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}'): 3 members, default flags"
  echo "# VmRSS in MiB: leader, follower, follower"
  echo
  printf '| %-28s | %9s | %9s | %9s |\n' "" leader follower follower
  printf '|------------------------------|-----------|-----------|-----------|\n'
  row() { set -- "$1" $2; printf '| %-28s | %9s | %9s | %9s |\n' "$1" "$2" "$3" "$4"; }
  row "keel, empty" "$keel_idle"
  row "keel, $keys keys" "$keel_loaded"
  row "keel, after snapshot" "$keel_snap"
  printf '| %-28s | %9s | %9s | %9s |\n' "keel, follower restarted" "" "$keel_restart" ""
  row "etcd, $keys keys" "$etcd_loaded"
  echo
  python3 - "$keel_loaded" "$keel_snap" "$etcd_loaded" "$keel_restart" "$keys" "$size" "$etcd_keys" <<'PY'
import sys
kl, ks, el = (list(map(lambda x: float(x) if x != "-" else None, s.split())) for s in sys.argv[1:4])
kr = float(sys.argv[4]); keys = sys.argv[5]; ksize = sys.argv[6]; ekeys = sys.argv[7]
def ratio(a, b): return "%.2f" % (a / b) if a and b else "-"
for name, k in (("loaded", kl), ("snapshot", ks)):
    print("RESULT workload=memory keys=%s state=%s keel_leader_mb=%.1f keel_follower_mb=%.1f etcd_leader_mb=%s etcd_follower_mb=%s "
          "ratio_leader=%s ratio_follower=%s keel_keys=%s etcd_keys=%s"
          % (keys, name, k[0], max(k[1:]), el[0] if el[0] else "-", max(el[1:]) if el[1] else "-",
             ratio(k[0], el[0]), ratio(max(k[1:]), max(el[1:]) if el[1] else None), ksize, ekeys))
print("RESULT workload=memory keys=%s state=restarted keel_follower_mb=%.1f" % (keys, kr))
PY
}
out=$(report)
echo "$out"
if [ "$write_docs" = 1 ]; then
  . scripts/doc-section.sh
  keel_write_doc_section docs/benchmarks.md memory "$(printf '## Memory: 1M keys, keel against etcd\n\nCommand: `bench/compare-memory.sh %s`. Resident memory (VmRSS) of each node holding the\nsame number of distinct keys with 16-byte values, each written once by its own load client.\nTarget (issue "End-to-end speed"): keel at most half of etcd (`ratio` <= 0.5).\n\n```\n%s\n```' "$args_given" "$out")"
  echo "wrote docs/benchmarks.md" >&2
fi
