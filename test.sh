#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test of keel.
#   ./test.sh                 the coverage build with every test, then the sanitizer build
#   KEEL_JOBS=N ./test.sh     parallel build and test jobs (default: the number of cores)
#   KEEL_SKIP_ASAN=1          skip the sanitizer build (a quicker local run)
set -euo pipefail
cd "$(dirname "$0")"
. scripts/deps.sh
keel_install_deps
jobs=${KEEL_JOBS:-$(nproc)}
status=0
started=$SECONDS
section() { printf '\n==== %s (%ds) ====\n' "$*" "$((SECONDS - started))"; }

# 1. Every test, in a build instrumented for line coverage.
section "build (debug, coverage)"
cmake -S . -B build/cov -G Ninja -DCMAKE_BUILD_TYPE=Debug -DKEEL_COVERAGE=ON -DKEEL_BENCH=OFF >/dev/null
find build/cov -name '*.gcda' -delete
ninja -C build/cov -j "$jobs"
section "tests"
(cd build/cov && ctest --output-on-failure -j "$jobs") || status=1

section "line coverage"
# --gcov-ignore-parse-errors: processes of one binary that end together (the servers of the
# integration and fault tests) can race on a .gcda file and leave a negative branch count,
# which gcovr 5.2 otherwise refuses to parse at all.
gcov_args=(-r . --object-directory build/cov --exclude '.*-test\.c\+\+' --exclude 'tests/' --exclude 'build/'
           --gcov-ignore-parse-errors)
gcovr "${gcov_args[@]}" --filter 'src/' --print-summary -o build/cov/coverage.txt build/cov 2>/dev/null | tail -n 3 || true
sed -n '/^---/,$p' build/cov/coverage.txt | head -n 60 || true
echo "consensus module (src/core), which must stay at 90% or more:"
# Its report goes to a file of its own: gcovr replaces the file it writes (-o /dev/null, run as
# root, left a regular file in the place of /dev/null).
gcovr "${gcov_args[@]}" --filter 'src/core/' --print-summary --fail-under-line 90 -o build/cov/coverage-core.txt build/cov 2>/dev/null ||
  { echo "FAILED: line coverage of src/core is under 90%"; status=1; }

# 2. The same tests under AddressSanitizer and UndefinedBehaviorSanitizer.
if [ "${KEEL_SKIP_ASAN:-0}" != 1 ]; then
  section "build (debug, address + undefined-behaviour sanitizers)"
  cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DKEEL_SANITIZE=ON -DKEEL_BENCH=OFF >/dev/null
  ninja -C build/asan -j "$jobs"
  section "tests under sanitizers"
  (cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -j "$jobs") || status=1
fi

section "done"
[ "$status" = 0 ] && echo "all tests passed" || echo "SOME TESTS FAILED"
exit $status
