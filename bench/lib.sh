# Shared by the bench scripts that run a local 3-node keel cluster (sourced, not run). The
# caller sets `base` (node i listens on 127.0.0.1:base+i and serves RESP on base+10+i) and keeps
# the pids of its nodes in the associative array node_pid (an empty entry: node down). With
# --redis-tls nodes, the caller puts redis-cli's TLS flags in the array rcli_tls.
rcli_tls=()

addr() { echo "127.0.0.1:$((base + $1))"; }
rport() { echo $((base + 10 + $1)); }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # user + system CPU of process $1, in clock ticks

# redis_csv TEST: redis-benchmark --csv output on stdin -> "rps p50_ms p99_ms max_ms" of TEST (SET,
# GET), or "- - - -". Its columns: "test","rps","avg_latency_ms","min_latency_ms",
# "p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms".
redis_csv() {
  python3 -c '
import csv, sys
for row in csv.reader(sys.stdin):
    if row and row[0] == sys.argv[1]:
        print("%.0f %.3f %.3f %.3f" % (float(row[1]), float(row[4]), float(row[6]), float(row[7])))
        break
else:
    print("- - - -")' "$1"
}

# The id of the node that says it leads (empty when none).
leader() {
  local i
  for i in 1 2 3; do
    [ -n "${node_pid[$i]:-}" ] || continue
    if timeout 2 redis-cli "${rcli_tls[@]}" -p "$(rport "$i")" INFO 2>/dev/null | grep -q '^role:leader'; then
      echo "$i"
      return
    fi
  done
}

# wait_leader NAME: the leader's id once a write through it succeeds (about 20 s at most); else
# "NAME: no leader" and exit 1.
wait_leader() {
  local l
  for _ in $(seq 400); do
    l=$(leader)
    if [ -n "$l" ] && timeout 5 redis-cli "${rcli_tls[@]}" -p "$(rport "$l")" SET "$1-ready" 1 2>/dev/null | grep -q OK; then
      echo "$l"
      return
    fi
    sleep 0.05
  done
  echo "$1: no leader" >&2
  exit 1
}

# info_field NODE FIELD: FIELD of NODE's INFO over its RESP port (empty, and no failure under
# `set -e -o pipefail`, when it does not answer).
info_field() {
  timeout 2 redis-cli "${rcli_tls[@]}" -p "$(rport "$1")" INFO 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p" || true
}

# wait_caught_up NODE NAME: until NODE has applied what the leader had committed when the wait
# began (a restarted node has loaded its state and caught up; about 120 s at most); else
# "NAME: nNODE did not catch up" and exit 1.
wait_caught_up() {
  local l target applied
  l=$(wait_leader "$2")
  target=$(info_field "$l" commit)
  for _ in $(seq 2400); do
    [ -n "$target" ] || target=$(info_field "$l" commit)
    applied=$(info_field "$1" applied)
    if [ -n "$target" ] && [ -n "$applied" ] && [ "$applied" -ge "$target" ]; then return; fi
    sleep 0.05
  done
  echo "$2: n$1 did not catch up" >&2
  exit 1
}
