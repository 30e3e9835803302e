#!/usr/bin/env bash
# Throughput through the Kafka source (issue 15): rapport-kafka-mock with a topic of P partitions,
# pre-loaded with N generated events (kcat, keyed by customer_id, Kafka's default partitioner), then
# one rapportd instance ([kafka], P partitions, fresh state dir) consuming them; the time from its start
# until every record is stored (rapport_kafka_records_total = N, every partition's lag 0) gives
# events/s. Each rep on a fresh cluster and state dir; reports each run and the median into
# bench/results/kafka_bench.md. The mock keeps at most 100,000 records or 5 MiB per partition, so N is
# bounded by P (about 25,000 generated events per MiB).
#
#   bench/kafka_bench.sh [--build build/perf] [--events 100000] [--partitions 4] [--reps 3]
#                        [--durability fsync|async]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build/perf EVENTS=100000 PARTITIONS=4 REPS=3 DURABILITY=fsync
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --events) EVENTS=$2; shift 2 ;;
    --partitions) PARTITIONS=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --durability) DURABILITY=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ "$EVENTS" -gt $((PARTITIONS * 100000)) ]; then
  echo "--events $EVENTS exceeds the mock's 100,000 records per partition x $PARTITIONS partitions" >&2
  exit 2
fi
RAPPORTD=$BUILD/daemon/rapportd RAPPORTCTL=$BUILD/daemon/rapportctl MOCK=$BUILD/daemon/rapport-kafka-mock
WORK=$(mktemp -d /tmp/rapport-kafka-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v s="$2" '$1 == s { print $2 }'; }

# key<TAB>value lines: the generated events keyed by their customer_id.
"$RAPPORTCTL" generate --customers 20000 --events "$EVENTS" --seed 11 |
  python3 -c 'import json,sys
for line in sys.stdin:
    line = line.rstrip("\n")
    if line: print(json.loads(line)["customer_id"] + "\t" + line)' >"$WORK/records.tsv"
log "$(wc -l <"$WORK/records.tsv") records generated"
# The mock drops the oldest records of a partition beyond 5 MiB: keep well under that (partitions fill
# about evenly), so that the topic holds every record and the count below is exact.
bytes=$(wc -c <"$WORK/records.tsv")
if [ "$bytes" -gt $((PARTITIONS * 4 * 1024 * 1024)) ]; then
  echo "--events $EVENTS is $bytes bytes: over the mock's 5 MiB per partition with $PARTITIONS partitions;" \
    "use fewer events or more partitions" >&2
  exit 2
fi

runs=()
for rep in $(seq "$REPS"); do
  rm -f "$WORK/bootstrap.txt"
  "$MOCK" --topic "events:$PARTITIONS" >"$WORK/bootstrap.txt.new" 2>"$WORK/mock.log" &
  mock=$!
  pids+=($mock)
  for _ in $(seq 100); do [ -s "$WORK/bootstrap.txt.new" ] && break; sleep 0.1; done
  mv "$WORK/bootstrap.txt.new" "$WORK/bootstrap.txt"
  B=$(head -1 "$WORK/bootstrap.txt")
  kcat -P -b "$B" -t events -K $'\t' -X partitioner=murmur2_random -X linger.ms=20 -l "$WORK/records.tsv"
  rm -rf "$WORK/state"
  cat >"$WORK/rapport.toml" <<TOML
[server]
http = "127.0.0.1:0"
tcp = "127.0.0.1:0"
[storage]
state_dir = "$WORK/state"
partitions = $PARTITIONS
durability = "$DURABILITY"
[kafka]
brokers = "$B"
topic = "events"
group_id = "bench"
[kafka.properties]
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500
TOML
  start=$(date +%s.%N)
  "$RAPPORTD" --config "$WORK/rapport.toml" 2>"$WORK/rapportd.log" &
  daemon=$!
  pids+=($daemon)
  port=""
  for _ in $(seq 300); do
    port=$(sed -nE 's/.*listening http=[^ ]*:([0-9]+) .*/\1/p' "$WORK/rapportd.log" | head -1)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$WORK/rapportd.log" >&2; exit 1; }
  # The first group join of the mock takes a few seconds: measured from the first assignment.
  for _ in $(seq 600); do grep -q "kafka: assigned" "$WORK/rapportd.log" && break; sleep 0.05; done
  assigned=$(date +%s.%N)
  while :; do
    records=$(metric "$port" rapport_kafka_records_total)
    lag=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^rapport_kafka_consumer_lag\{/ { n++; s += $2 } END { print n "/" s }')
    [ "${records%.*}" = "$EVENTS" ] && [ "$lag" = "$PARTITIONS/0" ] && break
    sleep 0.05
  done
  done_at=$(date +%s.%N)
  rate=$(python3 -c "print(round($EVENTS / ($done_at - $assigned)))")
  log "rep $rep: $EVENTS events in $(python3 -c "print(round($done_at - $assigned, 2))") s after the assignment ($rate events/s; start to assignment $(python3 -c "print(round($assigned - $start, 2))") s)"
  runs+=("$rate")
  kill "$daemon"; wait "$daemon" 2>/dev/null || true
  kill "$mock"; wait "$mock" 2>/dev/null || true
done
median=$(printf '%s\n' "${runs[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
mkdir -p bench/results
{
  echo "# Kafka source throughput (bench/kafka_bench.sh)"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores, one instance, $PARTITIONS partitions, $EVENTS events, durability $DURABILITY,"
  echo "build $BUILD. Events/s from the first assignment until every record is stored:"
  echo
  echo "| rep | events/s |"
  echo "|---|---|"
  i=0
  for r in "${runs[@]}"; do i=$((i + 1)); echo "| $i | $r |"; done
  echo
  echo "Median: **$median events/s**."
} >bench/results/kafka_bench.md
log "median $median events/s (bench/results/kafka_bench.md)"
