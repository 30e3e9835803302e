#!/usr/bin/env bash
# End-to-end ingest benchmark: builds Release binaries, starts rapportd on loopback
# (state in a temp dir under build/), drives it with rapport-loadgen from its own
# process in each mode, repeats each run, and prints the medians.
#   bench/run.sh [EVENTS] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-1000000}
REPEATS=${2:-3}
make -s deps
cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DRAPPORT_TESTS=OFF -DRAPPORT_BENCH=ON >/dev/null
cmake --build build/bench -j "$(nproc)" --target rapportd rapportctl rapport-loadgen rapport_bench >/dev/null

work=$(mktemp -d -p build/bench run.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start_daemon() {
  rm -rf "$work/state"
  build/bench/daemon/rapportd --http 127.0.0.1:0 --tcp 127.0.0.1:0 --state-dir "$work/state" 2>"$work/log" &
  pid=$!
  for _ in $(seq 100); do grep -q "listening" "$work/log" 2>/dev/null && break; sleep 0.1; done
  HTTP=$(sed -n 's/.*listening http=\([^ ]*\) tcp=.*/\1/p' "$work/log")
  TCP=$(sed -n 's/.*listening http=[^ ]* tcp=\(.*\)$/\1/p' "$work/log")
}
stop_daemon() { kill -TERM "$pid"; wait "$pid" || true; pid=""; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

run_mode() {  # mode connections batch
  local mode=$1 conns=$2 batch=$3 rates=()
  for _ in $(seq "$REPEATS"); do
    start_daemon
    line=$(build/bench/bench/rapport-loadgen --mode "$mode" --tcp "$TCP" --http "$HTTP" -c "$conns" \
             -n "$EVENTS" --customers 1000000 --batch "$batch")
    stop_daemon
    echo "  $line" >&2
    rates+=("$(sed -n 's/.*events_per_s=\([0-9]*\).*/\1/p' <<<"$line")")
  done
  printf '%s\n' "${rates[@]}" | median
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "| mode | connections | events/request | median events/s |"
echo "|---|---|---|---|"
echo "| tcp | 4 | 1000 | $(run_mode tcp 4 1000) |"
echo "| http-batch | 4 | 1000 | $(run_mode http-batch 4 1000) |"
echo "| http-single | 16 | 1 | $(EVENTS=$((EVENTS / 10)) run_mode http-single 16 1) |"
