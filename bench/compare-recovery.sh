#!/usr/bin/env bash
# W5 (recovery and catch-up) of shared/bench/WORKLOADS.md, in one run on this machine:
#   3 durable keel-server nodes (Release, SegmentedLog, fsync on) on 127.0.0.1, filled with
#   GIB GiB of key-value state (values of VALUE_KIB KiB written by `keel bench`), then
#   restart      a follower is stopped and started again while its log holds the whole state
#                (no snapshot: the log is read back and replayed); seconds from the start of the
#                process until it serves a linearizable read (through its own RESP port), with
#                its files' pages dropped from the page cache first (cold) and kept (warm)
#   snapshot     every node snapshots and compacts (`keel snapshot`); seconds per node
#   restart-snap the same follower restarted from its snapshot (restored, nothing to replay)
#   catch-up     a new empty node (--join) is added as a learner, receives the snapshot, and is
#                promoted to voter: seconds from `members add-learner` until it has applied the
#                leader's commit index (transfer), and until `members promote` returned (voter);
#                MB/s is the snapshot's bytes over the transfer seconds.
#   plain        the physical limit beside it: keel-log-bench --plain-bytes 1048576, a loop of
#                1 MiB write(2) + fdatasync(2) in the same directory, run right before each
#                catch-up; `ratio` is catch-up MB/s over plain MB/s (median of the pairs).
#
#   bench/compare-recovery.sh [--gib 1] [--value-kib 64] [--reps 3] [--write-docs]
#
# --write-docs replaces the W5 section of docs/benchmarks.md with this run's output.
# Ports: 127.0.0.1:27401-27409 (peers and clients: 3 nodes and one new node per repetition, so
# at most 6 repetitions), 27411-27419 (RESP); KEEL_W5_PORT moves them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
gib=1
value_kib=64
reps=3
write_docs=0
args_given="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --gib) gib=$2; shift 2 ;;
    --value-kib) value_kib=$2; shift 2 ;;
    --reps) reps=$2; [ "$reps" -ge 1 ] && [ "$reps" -le 6 ] || { echo "--reps: 1 to 6" >&2; exit 2; }; shift 2 ;;
    --write-docs) write_docs=1; shift ;;
    *) sed -n '2,24p' "$0" >&2; exit 2 ;;
  esac
done
. scripts/deps.sh
keel_install_deps

build=${KEEL_W5_BUILD:-build/recovery-release}
echo "==== building keel-server, keel and keel-log-bench (Release) in $build" >&2
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEEL_BENCH=ON -DKEEL_FAULTS=OFF >/dev/null
ninja -C "$build" -j "${KEEL_JOBS:-2}" keel-server keel keel-log-bench >&2
server=$build/apps/keel-server
keel=$build/apps/keel
logbench=$(find "$build" -name keel-log-bench -type f -perm -u+x | head -n 1)

work=$(mktemp -d /tmp/keel-w5.XXXXXX)
declare -A node_pid
cleanup() {
  for p in "${node_pid[@]}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
base=${KEEL_W5_PORT:-27400}
tick_ms=50
election_ticks=10
. bench/lib.sh
peers_flag="1=$(addr 1),2=$(addr 2),3=$(addr 3)"
cluster="$(addr 1),$(addr 2),$(addr 3)"
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# start_node ID [extra flags...]: the log keeps every entry until an explicit snapshot.
start_node() {
  local i=$1
  shift
  "$server" --id "$i" --data-dir "$work/n$i" --listen "$(addr "$i")" --peers "${PEERS:-$peers_flag}" \
    --redis-listen "127.0.0.1:$(rport "$i")" --tick-ms $tick_ms --election-ticks $election_ticks \
    --snapshot-entries 100000000 "$@" >>"$work/n$i.log" 2>&1 &
  node_pid[$i]=$!
}
stop_node() {  # graceful (SIGTERM): the node finishes its sync and exits
  local i=$1
  kill "${node_pid[$i]}" 2>/dev/null || true
  wait "${node_pid[$i]}" 2>/dev/null || true
  node_pid[$i]=""
}
# One field (commit, applied, role, ...) of node I's INFO on its RESP port: cheap enough to poll
# while the machine's two cores are busy with the transfer.
status_of() {
  timeout 2 redis-cli -p "$(rport "$1")" INFO 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}
# Waits until node $1 has applied index $2 (at most 10 minutes). One redis-cli process polls INFO
# every 10 ms: a process per poll would take a quarter of a core from the catch-up it measures.
wait_applied() {
  (set +o pipefail
   timeout 600 redis-cli -p "$(rport "$1")" -r 60000 -i 0.01 INFO 2>/dev/null |
     awk -F: -v t="$2" '{ sub(/\r$/, "") } $1 == "applied" && $2 + 0 >= t + 0 { ok = 1; exit } END { exit !ok }')
}
cpu_s() {  # user + system CPU seconds of process $1 so far
  awk -v hz="$(getconf CLK_TCK)" -v t="$(cpu_ticks "$1" 2>/dev/null || echo 0)" 'BEGIN { printf "%.2f", t / hz }'
}
rss_mb() { awk '/^VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_mb() { awk '/^VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo 0; }
drop_cache() {  # drops the page cache of one node's files (posix_fadvise, this node only)
  python3 - "$1" <<'PY'
import os, sys
for name in os.listdir(sys.argv[1]):
    p = os.path.join(sys.argv[1], name)
    fd = os.open(p, os.O_RDONLY)
    os.fdatasync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
PY
}
# Starts node I and sets served_s to the seconds until a linearizable read through it returns
# the marker. (Not in a subshell: node_pid must keep the new process.)
time_until_serves() {
  local i=$1 t0 t1
  t0=$(now_ms)
  start_node "$i" --quiet true
  for _ in $(seq 12000); do  # at most 10 minutes
    if [ "$(timeout 2 redis-cli -p "$(rport "$i")" GET w5-marker 2>/dev/null)" = "$marker" ]; then
      t1=$(now_ms)
      served_s=$(python3 -c "print('%.2f' % (($t1 - $t0) / 1000))")
      return
    fi
    sleep 0.05
  done
  echo "compare-recovery: n$i never served" >&2
  exit 1
}

for i in 1 2 3; do start_node "$i" --quiet true; done
L=$(wait_leader compare-recovery)
echo "==== keel cluster up; leader n$L; data in $work" >&2

# ---- Fill ----
count=$(python3 -c "print(int($gib * 1024 * 1024 / $value_kib))")
echo "==== filling: $count values of $value_kib KiB" >&2
t0=$(now_ms)
"$keel" --cluster "$cluster" --timeout 30000 bench --clients 8 --count "$count" --value-size $((value_kib * 1024)) >&2
t1=$(now_ms)
fill_s=$(python3 -c "print('%.1f' % (($t1 - $t0) / 1000))")
marker=$(date +%s%N)
L=$(wait_leader compare-recovery)
redis-cli -p "$(rport "$L")" SET w5-marker "$marker" >/dev/null
F=$(( L % 3 + 1 ))
log_bytes=$(du -sb "$work/n$F" | cut -f1)
echo "==== filled in ${fill_s} s; n$F's data dir holds $log_bytes bytes" >&2

# ---- Restart with the state in the log ----
stop_node "$F"
drop_cache "$work/n$F"
time_until_serves "$F"
restart_cold=$served_s
restart_rss=$(rss_mb "${node_pid[$F]}")
echo "  restart (log, cold): $restart_cold s, RSS $restart_rss MB" >&2
stop_node "$F"
time_until_serves "$F"
restart_warm=$served_s
echo "  restart (log, warm): $restart_warm s" >&2

# ---- Snapshot every node ----
snap_s=()
for i in 1 2 3; do
  t0=$(now_ms)
  rm -f "$work/n$i/snapshot"  # (none yet: the log was never compacted)
  "$keel" --timeout 600000 snapshot "$(addr "$i")" >/dev/null
  # The call returns once the log has the snapshot; its file is written right after.
  for _ in $(seq 6000); do [ -f "$work/n$i/snapshot" ] && break; sleep 0.02; done
  t1=$(now_ms)
  snap_s+=("$(python3 -c "print('%.2f' % (($t1 - $t0) / 1000))")")
done
snap_bytes=$(stat -c %s "$work/n$L/snapshot")
echo "  snapshots: ${snap_s[*]} s; $snap_bytes bytes" >&2

# ---- Restart from the snapshot ----
stop_node "$F"
drop_cache "$work/n$F"
time_until_serves "$F"
restart_snap=$served_s
echo "  restart (snapshot, cold): $restart_snap s" >&2

# ---- Catch-up of a new node, REPS times, each beside a plain loop ----
# Each repetition adds a node never seen before (ids 4, 5, ...): a new member, whose first
# connection the leader opens at once (a re-added id would wait out the leader's reconnect
# backoff to the old one).
rows=()
for r in $(seq "$reps"); do
  n=$((3 + r))
  plain=$("$logbench" --dir "$work/plain" --plain-bytes 1048576 --seconds 1 --reps 3 |
    sed -n 's/.* plain_mbps=\([0-9.]*\).*/\1/p')
  rm -rf "$work/plain"
  PEERS="$peers_flag,$n=$(addr "$n")" start_node "$n" --join true
  L=$(wait_leader compare-recovery)
  cpuL0=$(cpu_s "${node_pid[$L]}"); cpuN0=$(cpu_s "${node_pid[$n]}")
  t0=$(now_ms)
  "$keel" --cluster "$cluster" --timeout 600000 members add-learner "$n" "$(addr "$n")" >/dev/null
  target=$(status_of "$L" commit)
  wait_applied "$n" "$target" || { echo "compare-recovery: n$n never caught up" >&2; tail -20 "$work/n$n.log" >&2; exit 1; }
  t1=$(now_ms)
  cpuL=$(python3 -c "print('%.2f' % ($(cpu_s "${node_pid[$L]}") - $cpuL0))")
  cpuN=$(python3 -c "print('%.2f' % ($(cpu_s "${node_pid[$n]}") - $cpuN0))")
  "$keel" --cluster "$cluster" --timeout 600000 members promote "$n" >/dev/null
  t2=$(now_ms)
  rssn=$(rss_mb "${node_pid[$n]}")
  hwmn=$(hwm_mb "${node_pid[$n]}")
  hwmL=$(hwm_mb "${node_pid[$L]}")
  row=$(python3 -c "
t0, t1, t2, b, p = $t0, $t1, $t2, $snap_bytes, float('$plain')
x = (t1 - t0) / 1000
m = b / x / 1e6
print('%.2f %.2f %.1f %.1f %.2f' % (x, (t2 - t0) / 1000, m, p, m / p))")
  rows+=("$row $rssn $hwmn $hwmL")
  echo "  catch-up $r (n$n): transfer/voter s, MB/s, plain MB/s, ratio: $row; RSS $rssn MB (peak $hwmn), leader peak $hwmL MB; CPU s: leader $cpuL, new node $cpuN" >&2
  # Where the seconds went: the snapshot lines of both logs (UTC timestamps).
  { date -u -d "@$((t0 / 1000)).$(printf %03d $((t0 % 1000)))" +'%H:%M:%S.%3N members add-learner'
    grep -h "snapshot" "$work/n$n.log" || true
    date -u -d "@$((t1 / 1000)).$(printf %03d $((t1 % 1000)))" +'%H:%M:%S.%3N caught up'; } | sed 's/^/    /' >&2
  "$keel" --cluster "$cluster" --timeout 60000 members remove "$n" >/dev/null
  stop_node "$n"
  rm -rf "$work/n$n"
done

report() {
  local state_gib
  state_gib=$(python3 -c "print('%.2f' % ($snap_bytes / 2**30))")
  echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores shared by 3-4 nodes and the client; filesystem $(findmnt -n -o FSTYPE --target "$work" 2>/dev/null || echo ?) under $work"
  echo "# keel: Release, SegmentedLog with fsync, tick ${tick_ms} ms, election timeout $((tick_ms * election_ticks))-$((2 * tick_ms * election_ticks)) ms"
  echo "# state: $count values of $value_kib KiB (keel bench, 8 clients, ${fill_s} s); snapshot $snap_bytes bytes; a follower's data dir before the snapshot: $log_bytes bytes"
  echo "# catch-up: median of $reps; plain: keel-log-bench --plain-bytes 1048576 (1 MiB write + fdatasync), 3 x 1 s before each catch-up"
  echo
  echo "RESULT workload=W5 case=restart source=log cache=cold state_gib=$state_gib seconds=$restart_cold rss_mb=$restart_rss"
  echo "RESULT workload=W5 case=restart source=log cache=warm state_gib=$state_gib seconds=$restart_warm"
  echo "RESULT workload=W5 case=snapshot state_gib=$state_gib seconds=$(printf '%s\n' "${snap_s[@]}" | sort -n | sed -n 2p) per_node=$(IFS=,; echo "${snap_s[*]}")"
  echo "RESULT workload=W5 case=restart source=snapshot cache=cold state_gib=$state_gib seconds=$restart_snap"
  printf '%s\n' "${rows[@]}" | python3 -c '
import sys, statistics
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
med = lambda i: statistics.median(r[i] for r in rows)
print("RESULT workload=W5 case=catch-up state_gib=%s seconds=%.2f voter_seconds=%.2f mbps=%.1f plain_mbps=%.1f ratio=%.2f "
      "rss_mb=%.0f peak_rss_mb=%.0f leader_peak_rss_mb=%.0f reps=%d"
      % (sys.argv[1], med(0), med(1), med(2), med(3), med(4), med(5), med(6), med(7), len(rows)))
print("# catch-up runs (transfer_s voter_s mbps plain_mbps ratio rss_mb peak_mb leader_peak_mb):")
for r in rows: print("#   " + " ".join("%g" % x for x in r))' "$state_gib"
}
out=$(report)
echo "$out"
if [ "$write_docs" = 1 ]; then
  . scripts/doc-section.sh
  keel_write_doc_section docs/benchmarks.md w5 "$(printf '## W5 recovery and catch-up\n\nCommand: `bench/compare-recovery.sh %s`. A restart is timed from the start of the process to\nthe first linearizable read it serves; catch-up from `keel members add-learner` to the new node having applied\nthe leader'"'"'s commit index (MB/s: snapshot bytes over those seconds), then to `members promote` returning.\n`ratio` is catch-up MB/s over the plain write+fdatasync loop of 1 MiB writes measured just before, on the same disk\n(target: >= 0.5).\n\n```\n%s\n```' "$args_given" "$out")"
  echo "wrote docs/benchmarks.md" >&2
fi
