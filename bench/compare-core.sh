#!/usr/bin/env bash
# W1 (core-steady) and W2 (core-fresh) of ../shared/bench/WORKLOADS.md: keel's consensus
# module against etcd's raft core, in one run on this machine.
#   bench/compare-core.sh [--reps N] [--write-docs]
# Prints a table and one RESULT line per row; lower _us is better; ratio = peer / keel.
# With --write-docs, replaces the "core" section of docs/benchmarks.md with this run's output.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=5
write_docs=0
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps=$2; shift 2 ;;
    --write-docs) write_docs=1; shift ;;
    *) echo "usage: $0 [--reps N] [--write-docs]" >&2; exit 2 ;;
  esac
done
peer=../shared/peers/etcd-raft-core/run.sh
[ -x "$peer" ] || { echo "compare-core: $peer not found (run from a checkout beside shared/)" >&2; exit 2; }
. scripts/deps.sh
keel_install_deps
cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEEL_FAULTS=OFF -DKEEL_BENCH=ON -DKEEL_LTO=ON \
  "-DKEEL_PARTS=src/core;bench" >/dev/null
ninja -C build/bench keel-core-bench >/dev/null
bench=build/bench/bench/keel-core-bench

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# One keel run: Google Benchmark's wall time per iteration, divided by `divisor`.
keel_once() {  # filter divisor
  "$bench" --benchmark_filter="$1" --benchmark_min_time=0.3 --benchmark_format=csv 2>/dev/null |
    awk -F, -v d="$2" '$1 ~ /^"?W/ {printf "%.4f\n", $3 / d / 1000}'
}
# One etcd raft run, by its own timer.
peer_once() { "$peer" "$@" | sed -n 's/.*: \([0-9.]*\) us\/op.*/\1/p'; }

rows=()
# The machine is shared and its speed drifts: keel and etcd run in alternation, and the ratio is
# the median of the per-pair ratios (the medians of each side are reported too).
row() {  # workload nodes batch keel_filter keel_divisor peer_args...
  local w=$1 n=$2 b=$3 filter=$4 div=$5
  shift 5
  local ks=() ps=() rs=()
  for _ in $(seq "$reps"); do
    local k p
    k=$(keel_once "$filter" "$div")
    p=$(peer_once "$@")
    ks+=("$k"); ps+=("$p")
    rs+=("$(awk -v p="$p" -v k="$k" 'BEGIN {printf "%.2f", p / k}')")
  done
  local km pm rmed
  km=$(printf '%s\n' "${ks[@]}" | median)
  pm=$(printf '%s\n' "${ps[@]}" | median)
  rmed=$(printf '%s\n' "${rs[@]}" | median)
  rows+=("$w $n $b $km $pm $(awk -v r="$rmed" 'BEGIN {printf "%.1f", r}')")
}
declare -A ops1=([1]=300000 [3]=60000 [5]=40000 [7]=30000)
declare -A ops100=([1]=600000 [3]=150000 [5]=60000 [7]=50000)
for n in 1 3 5 7; do
  row W1 "$n" 1 "^W1/nodes:$n/batch:1/" 1 -nodes "$n" -ops "${ops1[$n]}"
  row W1 "$n" 100 "^W1/nodes:$n/batch:100/" 100 -nodes "$n" -ops "${ops100[$n]}" -batch 100
done
declare -A opsf=([1]=20000 [7]=1000)
for n in 1 7; do
  row W2 "$n" 1 "^W2/nodes:$n/" 1 -nodes "$n" -ops "${opsf[$n]}" -fresh
done

cpu=$(awk -F: '/model name/ {gsub(/^ +/, "", $2); print $2; exit}' /proc/cpuinfo)
report() {
  echo "keel consensus core vs etcd raft core ($(date -u +%Y-%m-%d), $(nproc) cores, $cpu)"
  echo "$reps alternating runs of each; medians; ratio = median of the per-pair ratios"
  echo "microseconds per proposal (W1) or per fresh cluster (W2)"
  echo
  printf '| %-8s | %5s | %5s | %10s | %10s | %8s |\n' workload nodes batch keel_us etcd_us ratio
  printf '|----------|-------|-------|------------|------------|----------|\n'
  for r in "${rows[@]}"; do
    set -- $r
    printf '| %-8s | %5s | %5s | %10s | %10s | %7sx |\n' "$1" "$2" "$3" "$4" "$5" "$6"
  done
  echo
  for r in "${rows[@]}"; do
    set -- $r
    echo "RESULT workload=$1 nodes=$2 batch=$3 keel_us=$4 peer_us=$5 ratio=$6"
  done
}
out=$(report)
echo "$out"
if [ "$write_docs" = 1 ]; then
  . scripts/doc-section.sh
  notes='Both sides run the same pump (WORKLOADS.md W1/W2) with in-memory logs and wall-clock time;
keel runs Google Benchmark (bench/core-bench.c++, built with link-time optimisation), etcd its
peer program; the two alternate, and the ratio is the median of the per-pair ratios. Both
share one 16-byte payload across proposals. That a steady-state proposal allocates nothing but
its payload is asserted by tests/unit/allocation-test.c++ (a counting global operator new over
5,000 proposals on 3 nodes).'
  keel_write_doc_section docs/benchmarks.md core "$(printf '## W1 core-steady and W2 core-fresh\n\nCommand: `bench/compare-core.sh --reps %s --write-docs`\n\n%s\n\n```\n%s\n```' "$reps" "$notes" "$out")"
  echo "wrote docs/benchmarks.md"
fi
