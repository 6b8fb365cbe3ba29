#!/usr/bin/env bash
# W4 e2e-kv (and W6 failover) of shared/bench/WORKLOADS.md, in one run on this machine:
#   keel       3 durable keel-server nodes (Release, SegmentedLog, fsync on), loaded by `keel bench`
#   keel-resp  such a cluster through its Redis-protocol port, loaded by redis-benchmark
#   etcd       ../shared/peers/etcd-kv/run.sh (3 etcd members, fsync on, Go clientv3 load client)
#   redis      ../shared/peers/redis/run.sh (one Redis, appendfsync always, redis-benchmark)
# For each C in CLIENTS: C clients doing sequential writes of distinct keys with 16-byte values,
# then reads (linearizable on keel; etcd's load client only writes, so etcd has no read row).
# Every keel run starts from a fresh cluster, as every etcd and Redis run does.
#
#   bench/compare-e2e.sh [--clients "1 16 64 256"] [--ops-per-client N] [--min-ops N] [--reps N]
#                        [--w6 KILLS] [--no-peers] [--write-docs]
#
# Each run does max(--min-ops, --ops-per-client x C) operations (default max(5000, 1000 x C),
# five times the earlier default: runs of a few hundred milliseconds or more, which measure the
# steady state rather than the first milliseconds). --reps N repeats every measurement N times,
# the systems taking turns, and reports the median of ops/s, p50 and p99 (each taken
# separately). --w6 KILLS adds W6: kill -9 the leader KILLS times under a light load
# and report the median milliseconds from the kill to the next successful write; each kill
# waits until the node killed before it has restarted and caught up.
# --write-docs replaces the e2e section of docs/benchmarks.md with this run's output.
# The load generators run on the same 2 cores as the servers.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
clients="1 16 64 256"
per_client=1000
min_ops=5000
reps=1
w6=0
peers=1
write_docs=0
args_given="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients=$2; shift 2 ;;
    --ops-per-client) per_client=$2; shift 2 ;;
    --min-ops) min_ops=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --w6) w6=$2; shift 2 ;;
    --no-peers) peers=0; shift ;;
    --write-docs) write_docs=1; shift ;;
    *) sed -n '2,20p' "$0" >&2; exit 2 ;;
  esac
done
peer_dir=$(cd "$root/../shared/peers" 2>/dev/null && pwd || true)
if [ "$peers" = 1 ] && [ ! -x "$peer_dir/etcd-kv/run.sh" ]; then
  echo "compare-e2e: ../shared/peers not found (use --no-peers)" >&2
  exit 2
fi
. scripts/deps.sh
keel_install_deps

build=build/e2e-release
echo "==== building keel-server and keel (Release) in $build" >&2
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEEL_BENCH=OFF -DKEEL_FAULTS=OFF >/dev/null
ninja -C "$build" -j "${KEEL_JOBS:-2}" keel-server keel >&2
server=$build/apps/keel-server
keel=$build/apps/keel

work=$(mktemp -d /tmp/keel-e2e.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
base=${KEEL_E2E_PORT:-27100}
tick_ms=50
election_ticks=10
peers_flag="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 2)),3=127.0.0.1:$((base + 3))"
cluster="127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))"
declare -A node_pid
server_flags=""
start_node() {
  local i=$1
  "$server" --id "$i" --data-dir "$work/n$i" --listen "127.0.0.1:$((base + i))" --peers "$peers_flag" \
    --redis-listen "127.0.0.1:$((base + 10 + i))" --tick-ms $tick_ms --election-ticks $election_ticks \
    --quiet true $server_flags >>"$work/n$i.log" 2>&1 &
  node_pid[$i]=$!
  pids+=($!)
}
. bench/lib.sh
# Every keel measurement starts from a fresh cluster (empty data directories), as the peers'
# run.sh start a fresh etcd cluster or Redis for each of theirs: no run inherits the keys, the
# log and the snapshots of the runs before it. Sets L, the leader.
fresh_cluster() {
  local i
  for i in 1 2 3; do
    if [ -n "${node_pid[$i]:-}" ]; then
      kill -9 "${node_pid[$i]}" 2>/dev/null || true
      wait "${node_pid[$i]}" 2>/dev/null || true
    fi
    node_pid[$i]=""
    rm -rf "${work:?}/n$i"
  done
  for i in 1 2 3; do start_node "$i"; done
  L=$(wait_leader compare-e2e)
}

ops_for() { local n=$(( $1 * per_client )); [ "$n" -lt "$min_ops" ] && n=$min_ops; echo "$n"; }

# One measurement prints "ops p50_ms p99_ms" (or "- - -").
measure_keel() {  # op clients
  local op=$1 c=$2 n
  n=$(ops_for "$c")
  local extra=""
  if [ "$op" = read ]; then
    extra="--reads"
    # The keys the reads ask for (each client reads its first 100 keys over and over): the
    # cluster is fresh.
    timeout 300 "$keel" --cluster "$cluster" bench --clients "$c" --connections 4 --count $((100 * c)) \
      --value-size 16 >/dev/null 2>&1 || true
  fi
  # C clients over min(C, 4) connections, as etcd's load generator (peers/etcd-kv/load.go)
  # spreads its C clients over 4 clientv3 connections.
  # A run that prints no result (the bench failed, or ran past 300 s and was stopped) is left
  # out of the median, with a line that says why.
  local out
  out=$(timeout 300 "$keel" --cluster "$cluster" --json bench --clients "$c" --connections 4 --count "$n" --value-size 16 $extra \
        2>"$work/bench.err") || true
  if [ -z "$out" ]; then
    echo "  (keel bench $op C=$c printed no result: $(tail -n 2 "$work/bench.err" | tr '\n' ' '))" >&2
    return 0
  fi
  python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.0f %.3f %.3f" % (d["ops_per_sec"], d["p50_us"]/1000, d["p99_us"]/1000))' <<<"$out"
}
# "ops p50_ms p99_ms" of TEST (SET or GET) from redis-benchmark --csv on stdin.
parse_rb() { redis_csv "$1" | awk '{print $1, $2, $3}'; }
measure_resp() {  # op clients: through the leader's RESP port
  local op=$1 c=$2 n t
  n=$(ops_for "$c")
  t=$([ "$op" = write ] && echo set || echo get)
  timeout 600 redis-benchmark -h 127.0.0.1 -p "$(rport "$L")" -t "$t" -n "$n" -c "$c" -d 16 -r 100000000 --csv 2>/dev/null |
    parse_rb "${t^^}"
}
measure_redis() {  # op clients
  local op=$1 c=$2 n t
  n=$(ops_for "$c")
  t=$([ "$op" = write ] && echo set || echo get)
  timeout 600 "$peer_dir/redis/run.sh" -t "$t" -n "$n" -c "$c" -d 16 -r 100000000 --csv 2>/dev/null | parse_rb "${t^^}"
}
measure_etcd() {  # op clients
  local op=$1 c=$2 n
  [ "$op" = write ] || { echo "- - -"; return; }
  n=$(ops_for "$c")
  timeout 900 "$peer_dir/etcd-kv/run.sh" -clients "$c" -n "$n" -vsize 16 2>/dev/null | python3 -c '
import re, sys
def ms(s):
    m = re.match(r"([0-9.]+)(ns|µs|us|ms|s)$", s)
    v, u = float(m.group(1)), m.group(2)
    return v * {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1, "s": 1000}[u]
for line in sys.stdin:
    m = re.search(r"([0-9.]+) ops/s p50=(\S+) p99=(\S+)", line)
    if m:
        print("%.0f %.3f %.3f" % (float(m.group(1)), ms(m.group(2)), ms(m.group(3))))
        break
else:
    print("- - -")'
}
# The median of each of the three columns of the "ops p50_ms p99_ms" rows on stdin.
median_rows() {
  python3 -c '
import sys, statistics
rows = [l.split() for l in sys.stdin if l.strip()]
cols = []
for i in range(3):
    v = [float(r[i]) for r in rows if r[i] != "-"]
    cols.append(("%.0f" if i == 0 else "%.3f") % statistics.median(v) if v else "-")
print(" ".join(cols))'
}
measure() {  # system op clients
  case $1 in
    keel) measure_keel "$2" "$3" ;;
    keel-resp) measure_resp "$2" "$3" ;;
    etcd) measure_etcd "$2" "$3" ;;
    redis) measure_redis "$2" "$3" ;;
  esac
}

declare -A res
systems="keel keel-resp"
[ "$peers" = 1 ] && systems="$systems etcd redis"
# The repetitions interleave (each rep measures every system in turn), so that the disk's
# speed, which drifts on this VM from minute to minute, weighs on every system alike.
for c in $clients; do
  for op in write read; do
    declare -A rows=()
    for r in $(seq "$reps"); do
      for s in $systems; do
        case $s in keel | keel-resp) fresh_cluster ;; esac
        rows[$s]+="$(measure "$s" "$op" "$c")"$'\n'
      done
    done
    for s in $systems; do
      res[$op,$c,$s]=$(median_rows <<<"${rows[$s]}")
      echo "  W4 $op C=$c $s: ${res[$op,$c,$s]}" >&2
    done
    unset rows
  done
done

# W6: kill -9 the leader under a light load; ms until a write through another node succeeds.
w6_line=""
if [ "$w6" -gt 0 ]; then
  fresh_cluster
  "$keel" --cluster "$cluster" bench --clients 4 --duration 100000 --value-size 16 >/dev/null 2>&1 &
  load=$!
  pids+=($load)
  times=()
  for k in $(seq "$w6"); do
    L=$(wait_leader compare-e2e)
    other=$(( L % 3 + 1 ))
    t0=$(date +%s%N)
    kill -9 "${node_pid[$L]}"
    wait "${node_pid[$L]}" 2>/dev/null || true
    node_pid[$L]=""
    until timeout 3 redis-cli -p "$(rport "$other")" SET w6 "$k" 2>/dev/null | grep -q OK; do :; done
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000000 )))
    start_node "$L"
    # The next kill is of a whole cluster: the restarted node has loaded its state and caught up.
    wait_caught_up "$L" compare-e2e
    echo "  W6 kill $k of n$L: $(( (t1 - t0) / 1000000 )) ms (the restarted n$L caught up in $(( ($(date +%s%N) - t1) / 1000000 )) ms)" >&2
  done
  kill "$load" 2>/dev/null || true
  w6_line=$(printf '%s\n' "${times[@]}" | python3 -c '
import sys, statistics
v = sorted(int(x) for x in sys.stdin)
print("RESULT workload=W6 kills=%d median_ms=%d min_ms=%d max_ms=%d election_timeout_ms=%s" % (len(v), statistics.median(v), v[0], v[-1], sys.argv[1]))' \
    "$((tick_ms * election_ticks))")
fi

# keel-lease: linearizable reads from the leader's lease (--read-mode lease, diss. §6.4.1:
# safe while clocks drift less than --max-clock-drift-percent), on fresh clusters started with
# that flag. Writes do not depend on the read mode, so this row has reads only.
server_flags="--read-mode lease"
systems="$systems keel-lease"
for c in $clients; do
  res[write,$c,keel-lease]="- - -"
  lease_rows=""
  for r in $(seq "$reps"); do
    fresh_cluster
    lease_rows+="$(measure_keel read "$c")"$'\n'
  done
  res[read,$c,keel-lease]=$(median_rows <<<"$lease_rows")
  echo "  W4 read C=$c keel-lease: ${res[read,$c,keel-lease]}" >&2
done

report() {
  echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores shared by the servers and the load generators"
  echo "# keel: 3 nodes, Release, SegmentedLog with fsync, tick ${tick_ms} ms, election timeout $((tick_ms * election_ticks))-$((2 * tick_ms * election_ticks)) ms"
  echo "# ops per run: max($min_ops, $per_client x C); values 16 B; distinct keys; medians of $reps run(s), the systems taking turns"
  echo "# keel: \`keel bench\` (its client library: C clients on min(C, 4) connections, one session per connection, as etcd's load.go uses 4 connections); keel-resp: redis-benchmark on the leader's RESP port"
  echo "# every keel run on a fresh cluster (empty data directories), as every etcd and Redis run; keel-lease: reads with --read-mode lease"
  echo "# etcd: peers/etcd-kv/run.sh (writes only); redis: peers/redis/run.sh (one node, appendfsync always)"
  [ "$w6" -gt 0 ] && echo "# W6: kill -9 the leader under 4 clients' writes, ms until a SET through another node succeeds; each kill waits until the node killed before it has caught up"
  echo
  printf '| %-5s | %4s | %-10s | %9s | %8s | %8s |\n' op C system ops/s p50_ms p99_ms
  printf '|-------|------|------------|-----------|----------|----------|\n'
  for c in $clients; do
    for op in write read; do
      for s in $systems; do
        set -- ${res[$op,$c,$s]}
        printf '| %-5s | %4s | %-10s | %9s | %8s | %8s |\n' "$op" "$c" "$s" "$1" "$2" "$3"
      done
    done
  done
  echo
  echo "Ratios (same run):"
  for c in $clients; do
    python3 - "$c" "${res[write,$c,keel]}" "${res[write,$c,keel-resp]}" "${res[read,$c,keel]}" \
      "${res[write,$c,etcd]:-- - -}" "${res[write,$c,redis]:-- - -}" "${res[read,$c,keel-lease]}" <<'PY'
import sys
c = sys.argv[1]
kw, rw, kr, ew, xw, kl = (s.split() for s in sys.argv[2:8])
def r(a, b):
    try: return "%.2f" % (float(a) / float(b))
    except (ValueError, ZeroDivisionError): return "-"
print("  C=%-4s keel/etcd writes %sx (p99 %s vs %s ms); keel-resp/redis writes %s; keel reads/writes %sx (lease reads %sx)"
      % (c, r(kw[0], ew[0]), kw[2], ew[2], r(rw[0], xw[0]), r(kr[0], kw[0]), r(kl[0], kw[0])))
PY
  done
  echo
  for c in $clients; do
    for op in write read; do
      for s in $systems; do
        set -- ${res[$op,$c,$s]}
        [ "$1" = - ] && continue
        echo "RESULT workload=W4 op=$op clients=$c system=$s ops=$1 p50_ms=$2 p99_ms=$3"
      done
    done
  done
  [ -n "$w6_line" ] && echo "$w6_line"
  return 0
}
out=$(report)
echo "$out"
if [ "$write_docs" = 1 ]; then
  . scripts/doc-section.sh
  keel_write_doc_section docs/benchmarks.md e2e "$(printf '## W4 e2e-kv and W6 failover\n\nCommand: `bench/compare-e2e.sh %s`. The load generators share the 2 cores with the servers\n(3 keel nodes, 3 etcd members or one Redis, plus the client), so every figure is lower than on\nseparate machines and the ratios are what to read.\n\n```\n%s\n```' "$args_given" "$out")"
  echo "wrote docs/benchmarks.md" >&2
fi
