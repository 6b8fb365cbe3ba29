#!/usr/bin/env bash
# Where the time and the CPU of W4's RESP writes go: redis-benchmark SETs (distinct random keys,
# 16-byte values) on the leader of a fresh 3-node cluster, and for each run
#   ops            SETs per second (redis-benchmark)
#   rb_ms          the mean latency a client saw: clients / ops (Little's law)
#   commit_ms      the mean time from the leader's propose() to the answer (keel_commit_seconds)
#   loop_ms        rb_ms - commit_ms: the request's time outside Raft (the sockets, the leader's
#                  event-loop turns before reading it and after answering it, redis-benchmark)
#   *_us           CPU microseconds per SET of the leader, each follower (their mean) and
#                  redis-benchmark; busy: the share of the machine's CPUs not idle
#   f_syncs, f_sync_ms   a follower's syncs per 100 SETs and their mean time (keel_fsync_seconds)
#
#   bench/resp-breakdown.sh [--clients C] [--ops N] [--reps N] [--tmpfs] [--build DIR]
#                           [--server-flags "FLAGS"]
#
# --tmpfs puts the data directories in /dev/shm: every sync is then nearly free, which shows what
# the disk costs. Defaults: 64 clients, 100000 SETs, 3 runs, build/release.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
clients=64 ops=100000 reps=3 tmpfs=0 build=build/release server_flags=""
while [ $# -gt 0 ]; do
  case $1 in
    --clients) clients=$2; shift 2 ;;
    --ops) ops=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --tmpfs) tmpfs=1; shift ;;
    --build) build=$2; shift 2 ;;
    --server-flags) server_flags=$2; shift 2 ;;
    *) echo "usage: bench/resp-breakdown.sh [--clients C] [--ops N] [--reps N] [--tmpfs] [--build DIR] [--server-flags \"FLAGS\"]" >&2; exit 2 ;;
  esac
done
command -v redis-benchmark >/dev/null || { echo "resp-breakdown: redis-benchmark not found (apt-get install redis-tools)" >&2; exit 1; }
[ -x "$build/apps/keel-server" ] || { echo "resp-breakdown: no $build/apps/keel-server (cmake --build $build)" >&2; exit 1; }

parent=/tmp
[ "$tmpfs" = 1 ] && parent=/dev/shm
work=$(mktemp -d "$parent/keel-resp-breakdown.XXXXXX")
base=29400
declare -A node_pid
. bench/lib.sh
stop() {
  for p in "${node_pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  node_pid=()
}
trap 'stop; rm -rf "$work"' EXIT
peers="1=$(addr 1),2=$(addr 2),3=$(addr 3)"

# metric NODE NAME: NAME's value in NODE's /metrics (0 when absent).
metric() {
  curl -s "http://127.0.0.1:$((base + 20 + $1))/metrics" | awk -v n="$2" '$1 == n {print $2; f=1} END {if (!f) print 0}'
}
idle_busy() { awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }  # idle+iowait, total

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(git rev-parse --short HEAD); redis-benchmark -c $clients -n $ops SET on the leader; data in $parent"
printf '%-4s %7s %7s %9s %7s %9s %9s %7s %9s %6s %8s %9s\n' run ops rb_ms commit_ms loop_ms leader_us follow_us rb_us servers_us busy f_syncs f_sync_ms
for r in $(seq "$reps"); do
  stop
  rm -rf "$work/data"; mkdir -p "$work/data"
  for i in 1 2 3; do
    # shellcheck disable=SC2086
    "$build/apps/keel-server" --id "$i" --data-dir "$work/data/n$i" --listen "$(addr "$i")" --peers "$peers" \
      --redis-listen "127.0.0.1:$(rport "$i")" --http "127.0.0.1:$((base + 20 + i))" --tick-ms 50 --election-ticks 10 \
      --quiet true $server_flags >/dev/null 2>&1 &
    node_pid[$i]=$!
  done
  l=$(wait_leader resp-breakdown)
  f=()
  for i in 1 2 3; do [ "$i" != "$l" ] && f+=("$i"); done
  c0=$(metric "$l" keel_commit_seconds_count) s0=$(metric "$l" keel_commit_seconds_sum)
  declare -A t0 fc0 fs0
  for i in 1 2 3; do
    t0[$i]=$(cpu_ticks "${node_pid[$i]}")
    fc0[$i]=$(metric "$i" keel_fsync_seconds_count)
    fs0[$i]=$(metric "$i" keel_fsync_seconds_sum)
  done
  read -r idle0 total0 < <(idle_busy)
  # redis-benchmark's own CPU: user and system seconds, from /usr/bin/time's format.
  out=$( { /usr/bin/time -f "rbcpu %U %S" redis-benchmark -p "$(rport "$l")" -t set -c "$clients" -n "$ops" -d 16 \
            -r 100000000 --csv 2>&3 | redis_csv SET; } 3>&1 )
  read -r idle1 total1 < <(idle_busy)
  c1=$(metric "$l" keel_commit_seconds_count) s1=$(metric "$l" keel_commit_seconds_sum)
  rps=$(echo "$out" | awk '$1 ~ /^[0-9]/ {print $1; exit}')
  rbcpu=$(echo "$out" | awk '$1 == "rbcpu" {print $2 + $3}')
  if [ -z "$rps" ] || [ "$rps" = 0 ] || [ -z "$rbcpu" ]; then
    echo "$r: no result from redis-benchmark: $(echo "$out" | tr '\n' ' ' | cut -c1-300)"
    continue
  fi
  tick=$(getconf CLK_TCK)
  line=$(python3 - "$clients" "$ops" "$rps" "$c0" "$s0" "$c1" "$s1" "$rbcpu" "$tick" "$idle0" "$total0" "$idle1" "$total1" \
    "$(cpu_ticks "${node_pid[$l]}")" "${t0[$l]}" \
    "$(cpu_ticks "${node_pid[${f[0]}]}")" "${t0[${f[0]}]}" "$(cpu_ticks "${node_pid[${f[1]}]}")" "${t0[${f[1]}]}" \
    "$(metric "${f[0]}" keel_fsync_seconds_count)" "${fc0[${f[0]}]}" "$(metric "${f[0]}" keel_fsync_seconds_sum)" "${fs0[${f[0]}]}" \
    "$(metric "${f[1]}" keel_fsync_seconds_count)" "${fc0[${f[1]}]}" "$(metric "${f[1]}" keel_fsync_seconds_sum)" "${fs0[${f[1]}]}" <<'EOF'
import sys
a = sys.argv[1:]
clients, ops, rps = int(a[0]), int(a[1]), float(a[2])
c0, s0, c1, s1, rbcpu, tick = map(float, a[3:9])
idle0, total0, idle1, total1 = map(float, a[9:13])
l1, l0, fa1, fa0, fb1, fb0 = map(float, a[13:19])
fca1, fca0, fsa1, fsa0, fcb1, fcb0, fsb1, fsb0 = map(float, a[19:27])
rb_ms = clients / rps * 1000
commit_ms = (s1 - s0) / (c1 - c0) * 1000 if c1 > c0 else float("nan")
us = lambda ticks: ticks / tick / ops * 1e6
leader, follower = us(l1 - l0), (us(fa1 - fa0) + us(fb1 - fb0)) / 2
syncs = (fca1 - fca0) + (fcb1 - fcb0)
print("%7.0f %7.3f %9.3f %7.3f %9.1f %9.1f %7.1f %9.1f %5.0f%% %8.1f %9.3f" % (
    rps, rb_ms, commit_ms, rb_ms - commit_ms, leader, follower, rbcpu / ops * 1e6, leader + 2 * follower,
    100 * (1 - (idle1 - idle0) / (total1 - total0)), syncs / 2 / ops * 100,
    ((fsa1 - fsa0) + (fsb1 - fsb0)) / syncs * 1000 if syncs else float("nan")))
EOF
)
  printf '%-4s %s\n' "$r" "$line"
  echo "RESULT workload=resp-breakdown clients=$clients tmpfs=$tmpfs $(echo "$line" | awk '{printf "ops=%s rb_ms=%s commit_ms=%s loop_ms=%s leader_us=%s follower_us=%s rb_us=%s servers_us=%s busy=%s follower_syncs_per_100=%s follower_sync_ms=%s", $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11}')" >>"$work/results"
done
cat "$work/results"
