#!/usr/bin/env bash
# Throughput through the Kafka source (issue 15), one instance against two in the same run: for each
# rep and each group size (1, then 2 instances), a fresh rapport-kafka-mock with a topic of P
# partitions (plus the group's changes and members topics), fresh state dirs, the rapportd instances
# ([kafka], P partitions, one consumer group) started and waited for until the group is stable (every
# partition held, each instance holding some); then N generated events are produced (kcat, keyed by
# customer_id, Kafka's default partitioner) and the time from the produce's start until the instances
# together have stored all N (sum of rapport_events_accepted_total{transport="kafka"} = the distinct
# events among them, every lag 0) gives events/s (records read per second). Reports each run, the medians and their ratio into bench/results/kafka_bench.md.
# The mock keeps at most 100,000 records or 5 MiB per partition, so N is bounded by P (about 25,000
# generated events per MiB). On one machine the instances share its cores: the ratio shows what the
# group costs (rebalance, changes topic, members), not what a second machine adds.
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
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
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

# key<TAB>value lines: the generated events keyed by their customer_id.
"$RAPPORTCTL" generate --customers 20000 --events "$EVENTS" --seed 11 |
  python3 -c 'import json,sys
for line in sys.stdin:
    line = line.rstrip("\n")
    if line: print(json.loads(line)["customer_id"] + "\t" + line)' >"$WORK/records.tsv"
# The generator repeats about 1 % of its events (as connectors' retries do): those are duplicates, not stored.
UNIQUE=$(cut -f2 "$WORK/records.tsv" | python3 -c 'import json,sys
print(len({json.loads(l)["event_id"] for l in sys.stdin if l.strip()}))')
log "$(wc -l <"$WORK/records.tsv") records generated, $UNIQUE distinct events"
# The mock drops the oldest records of a partition beyond 5 MiB: keep well under that (partitions fill
# about evenly), so that the topic holds every record and the count below is exact.
bytes=$(wc -c <"$WORK/records.tsv")
if [ "$bytes" -gt $((PARTITIONS * 4 * 1024 * 1024)) ]; then
  echo "--events $EVENTS is $bytes bytes: over the mock's 5 MiB per partition with $PARTITIONS partitions;" \
    "use fewer events or more partitions" >&2
  exit 2
fi

# Sum of a metric's series matching a selector regex, over the instances' HTTP ports.
metric_sum() {
  local total=0 port v
  for port in "${ports[@]}"; do
    v=$(curl -s "http://127.0.0.1:$port/metrics" | awk -v re="$1" '$1 ~ re { s += $2 } END { printf "%d", s }')
    total=$((total + v))
  done
  echo "$total"
}
# "series/sum" of the lag gauges over the instances, and the fewest partitions one instance holds.
lag_state() {
  local series=0 sum=0 fewest=999999 port out n l
  for port in "${ports[@]}"; do
    out=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^rapport_kafka_consumer_lag\{/ { n++; s += $2 } END { printf "%d %d", n, s }')
    n=${out% *} l=${out#* }
    series=$((series + n)) sum=$((sum + l))
    [ "$n" -lt "$fewest" ] && fewest=$n
  done
  echo "$series/$sum/$fewest"
}

# One measurement: $1 instances; prints events/s.
measure() {
  local instances=$1 i B t0 t1 state
  rm -f "$WORK/bootstrap.txt.new"
  "$MOCK" --topic "events:$PARTITIONS" --topic "events.changes:$PARTITIONS" --topic "events.members:1" \
    --topic "events.stats:1" >"$WORK/bootstrap.txt.new" 2>"$WORK/mock.log" &
  mock=$!
  pids+=($mock)
  for _ in $(seq 100); do [ -s "$WORK/bootstrap.txt.new" ] && break; sleep 0.1; done
  B=$(head -1 "$WORK/bootstrap.txt.new")
  daemons=() ports=()
  for i in $(seq "$instances"); do
    rm -rf "$WORK/state$i"
    cat >"$WORK/rapport$i.toml" <<TOML
[server]
http = "127.0.0.1:0"
tcp = "127.0.0.1:0"
[storage]
state_dir = "$WORK/state$i"
partitions = $PARTITIONS
durability = "$DURABILITY"
[kafka]
brokers = "$B"
topic = "events"
group_id = "bench"
instance = "bench-$i"
[kafka.properties]
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500
TOML
    "$RAPPORTD" --config "$WORK/rapport$i.toml" 2>"$WORK/rapportd$i.log" &
    daemons+=($!)
    pids+=($!)
  done
  for i in $(seq "$instances"); do
    local port=""
    for _ in $(seq 300); do
      port=$(sed -nE 's/.*listening http=[^ ]*:([0-9]+) .*/\1/p' "$WORK/rapportd$i.log" | head -1)
      [ -n "$port" ] && break
      sleep 0.1
    done
    [ -n "$port" ] || { cat "$WORK/rapportd$i.log" >&2; exit 1; }
    ports+=("$port")
  done
  # A stable group: every partition held once, each instance holding at least one (the mock's first
  # joins take seconds; the rebalance to two members more).
  for _ in $(seq 1200); do
    state=$(lag_state)
    [ "${state%%/*}" = "$PARTITIONS" ] && [ "${state##*/}" -ge 1 ] && break
    sleep 0.1
  done
  [ "${state%%/*}" = "$PARTITIONS" ] || { echo "the group did not settle ($state)" >&2; tail -5 "$WORK"/rapportd*.log >&2; exit 1; }
  t0=$(date +%s.%N)
  kcat -P -b "$B" -t events -K $'\t' -X partitioner=murmur2_random -X linger.ms=20 -l "$WORK/records.tsv"
  log "  produced in $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s"
  while :; do
    [ "$(metric_sum '^rapport_events_accepted_total[{].*transport="kafka"')" = "$UNIQUE" ] &&
      [ "$(lag_state | cut -d/ -f1-2)" = "$PARTITIONS/0" ] && break
    sleep 0.05
  done
  t1=$(date +%s.%N)
  for d in "${daemons[@]}"; do kill "$d" 2>/dev/null || true; done
  for d in "${daemons[@]}"; do wait "$d" 2>/dev/null || true; done
  kill "$mock"; wait "$mock" 2>/dev/null || true
  python3 -c "print(round($EVENTS / ($t1 - $t0)))"
}

one=() two=()
for rep in $(seq "$REPS"); do
  for n in 1 2; do
    rate=$(measure "$n")
    log "rep $rep, $n instance(s): $rate events/s"
    if [ "$n" = 1 ]; then one+=("$rate"); else two+=("$rate"); fi
  done
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
m1=$(median "${one[@]}") m2=$(median "${two[@]}")
ratio=$(python3 -c "print(round($m2 / $m1, 2))")
mkdir -p bench/results
{
  echo "# Kafka source throughput, one instance and two (bench/kafka_bench.sh)"
  echo
  echo "\`bench/kafka_bench.sh --build $BUILD --events $EVENTS --partitions $PARTITIONS --reps $REPS --durability $DURABILITY\`"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $PARTITIONS partitions,"
  echo "$EVENTS events, durability $DURABILITY, build $BUILD. Events/s from the produce's start (group"
  echo "stable) until the instances together stored every event:"
  echo
  echo "| rep | one instance | two instances |"
  echo "|---|---|---|"
  for i in $(seq "$REPS"); do echo "| $i | ${one[$((i - 1))]} | ${two[$((i - 1))]} |"; done
  echo
  echo "Medians: **$m1 events/s** with one instance, **$m2 events/s** with two: **${ratio}x**."
  echo "Both on this one machine (they share its cores), so the ratio is the group's cost, not a second"
  echo "machine's gain."
} >bench/results/kafka_bench.md
log "medians: one $m1, two $m2 events/s (${ratio}x; bench/results/kafka_bench.md)"
