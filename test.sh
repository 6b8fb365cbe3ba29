#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test of keel.
#   ./test.sh            everything: the main build with coverage, then the sanitizer build
#   KEEL_JOBS=N          parallel build jobs (default: the number of cores)
set -euo pipefail
cd "$(dirname "$0")"
. scripts/deps.sh
keel_install_deps
jobs=${KEEL_JOBS:-$(nproc)}
fail=0

section() { printf '\n==== %s ====\n' "$*"; }

# 1. The main build: instrumented for coverage, every test.
section "build (coverage)"
cmake -S . -B build/cov -G Ninja -DCMAKE_BUILD_TYPE=Debug -DKEEL_COVERAGE=ON -DKEEL_BENCH=OFF >/dev/null
find build/cov -name '*.gcda' -delete
ninja -C build/cov -j "$jobs"
section "tests"
(cd build/cov && ctest --output-on-failure -j "$jobs") || fail=1

section "line coverage of src/"
gcovr -r . --filter 'src/' --exclude '.*test.*' --object-directory build/cov \
  --txt-metric line -s build/cov 2>/dev/null | tail -n 40 || true

# 2. AddressSanitizer + UndefinedBehaviorSanitizer over the same tests.
section "build (address + undefined-behaviour sanitizers)"
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DKEEL_SANITIZE=ON -DKEEL_BENCH=OFF >/dev/null
ninja -C build/asan -j "$jobs"
section "tests under sanitizers"
(cd build/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j "$jobs" -L "${KEEL_ASAN_LABEL:-}" ) || fail=1

exit $fail
