#!/usr/bin/env bash
# Long crash run: the e2e crash harness (tests/e2e/crash_test.cc) with many
# more SIGKILLs than CI runs. A connector streams unit purchases over TCP for
# 200 customers and resends whatever was not acknowledged; rapportd is killed
# at random (seeded) moments and restarted on the same state dir. After every
# restart nothing acknowledged may be missing and nothing may be applied twice;
# at the end every customer's revenue, event count and timeline must equal the
# distinct events sent.
#
#   bench/crash_long.sh [KILLS] [SEED] [BUILD_DIR]
#     KILLS      default 100 (RAPPORT_CRASH_KILLS)
#     SEED       default: from the clock, printed so a failure can be replayed
#     BUILD_DIR  default build-rel (a build of rapportd, rapportctl and e2e_tests;
#                ASan+UBSan builds are fine and catch more)
# Other knobs, passed through the environment: RAPPORT_CRASH_MAX_DELAY_MS
# (longest run between restart and kill; default here 3000; above ~10000 some
# runs also cross the storage's timed checkpoint), RAPPORT_CRASH_RATE (events/s).
# Every run also kills a third of the daemons while they drain after SIGTERM
# (checkpoint on close) and a quarter of the start-ups (journal replay).
# 100 kills take ~20-30 min with an ASan build on 2 cores (~2 M events).
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${1:-100}
SEED=${2:-$(date +%s)}
BUILD=${3:-build-rel}

if [ ! -x "$BUILD/tests/e2e_tests" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DRAPPORT_SANITIZE=address >/dev/null
  cmake --build "$BUILD" -j 2 --target rapportd rapportctl e2e_tests
fi

echo "crash_long: $KILLS kills, seed $SEED, build $BUILD"
export RAPPORT_CRASH_KILLS="$KILLS"
export RAPPORT_CRASH_SEED="$SEED"
export RAPPORT_CRASH_MAX_DELAY_MS="${RAPPORT_CRASH_MAX_DELAY_MS:-3000}"
start=$(date +%s)
if "$BUILD/tests/e2e_tests" --gtest_filter='Crash.*'; then
  echo "crash_long: PASS ($KILLS kills, seed $SEED) in $(( $(date +%s) - start )) s"
else
  echo "crash_long: FAIL (replay with: bench/crash_long.sh $KILLS $SEED $BUILD)" >&2
  exit 1
fi
