#!/bin/sh
# Builds the libFuzzer drivers in tests/fuzz/ with clang under ASan+UBSan and
# runs each for SECONDS (default 60), starting from the seed corpus in
# tests/fuzz/corpus/<target>/. New inputs go to $FUZZ_BUILD/corpus/<target>/,
# so the seeds in the tree never change; crashes are written to
# $FUZZ_BUILD/artifacts/. Exits non-zero when any target finds a crash.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]    targets: sse json text chunk pii
set -eu
cd "$(dirname "$0")/.."

SECS=${1:-60}
[ $# -gt 0 ] && shift
BUILD=${FUZZ_BUILD:-build-fuzz}
JOBS=${JOBS:-2}

sh scripts/install-deps.sh --fuzz

if [ $# -gt 0 ]; then
  TARGETS="$*"
else
  TARGETS=$(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c | sed 's/^fuzz_//'; done)
fi

cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DRAGD_FUZZ=ON >/dev/null
build_targets=""
for t in $TARGETS; do build_targets="$build_targets --target fuzz_$t"; done
# shellcheck disable=SC2086
cmake --build "$BUILD" -j "$JOBS" $build_targets

mkdir -p "$BUILD/artifacts" "$BUILD/logs"
failed=""
for t in $TARGETS; do
  mkdir -p "$BUILD/corpus/$t"
  log="$BUILD/logs/$t.log"
  echo "fuzz: $t for ${SECS}s"
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$BUILD/fuzz/fuzz_$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-" \
       "$BUILD/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    echo "fuzz: $t ok: ${runs:-?} executions, ${cov:-cov: ?}, corpus $(ls "$BUILD/corpus/$t" | wc -l) files"
  else
    echo "fuzz: $t FAILED, see $log"
    tail -n 40 "$log"
    failed="$failed $t"
  fi
done

if [ -n "$failed" ]; then
  echo "fuzz: crashes in:$failed (inputs in $BUILD/artifacts/)"
  exit 1
fi
