#!/usr/bin/env bash
# W3 (log-append) of shared/bench/WORKLOADS.md and the restart time of a 1 GiB log:
# SegmentedLog against a plain write+fdatasync loop, in the same run, on the same filesystem.
#   bench/compare-log.sh                 build (release) and run; RESULT lines on stdout
#   KEEL_BENCH_DIR=/path                 where the files go (default: a new dir under /tmp)
#   KEEL_LOG_BENCH_ARGS="--reps 3"       extra arguments for keel-log-bench
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=build/bench-log
# The whole tree first; if it does not configure (others' parts may not, at times), only what
# the benchmark needs: keel_base and keel_log.
if ! cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEEL_BENCH=ON >/dev/null 2>&1 ||
   ! ninja -C "$build" keel-log-bench >/dev/null; then
  shim=$(mktemp -d /tmp/keel-log-shim.XXXXXX)
  cat > "$shim/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.22)
project(keel_log_bench CXX)
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
find_package(Threads REQUIRED)
option(KEEL_BENCH "" ON)
add_library(keel_base $root/src/core/types.c++ $root/src/core/membership.c++ $root/src/core/memory-log.c++)
target_include_directories(keel_base PUBLIC $root/include)
add_subdirectory($root/src/log log)
CMAKE
  build=build/bench-log-only
  cmake -S "$shim" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  ninja -C "$build" keel-log-bench >/dev/null
  rm -rf "$shim"
fi
bin=$(find "$build" -name keel-log-bench -type f -perm -u+x | head -n 1)
dir=${KEEL_BENCH_DIR:-$(mktemp -d /tmp/keel-log-bench.XXXXXX)}
trap 'rm -rf "$dir"' EXIT
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, filesystem $(stat -f -c %T "$dir") ($(findmnt -n -o FSTYPE --target "$dir" 2>/dev/null || echo ?)), dir $dir"
"$bin" --dir "$dir" ${KEEL_LOG_BENCH_ARGS:-}
