#!/usr/bin/env bash
# Where one writer's time goes, per partition count, and where the bytes on disk go (issue 13's
# bound column; see bench/README.md). Uses the Release binaries bench/run.sh built in build/bench.
#
#   bench/writer_profile.sh [--partitions "1 2"] [--file EVENTS.ndjson] [--seconds S] [--events N]
#
# For each P: a fresh rapportd with `[storage] partitions = P`, closed-loop TCP ingest of the file
# (4 connections, 1000 lines/write, cycled with fresh event ids for the whole run), then over S
# seconds: the accepted events/s, each rapportd thread's CPU (µs per accepted event, from
# /proc/PID/task/TID/schedstat), the load generator's CPU, the machine's busy CPU, and a perf profile
# (self time) of the busiest thread. After a clean stop, `mdb_stat -a` of every partition: the bytes
# of each named database (journal, events, customers, ...) per stored event, beside `du`.
# Writes bench/results/writer_profile.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PARTS="1 2" FILE="" SECS=8 EVENTS=2000000
while [ $# -gt 0 ]; do
  case $1 in
    --partitions) PARTS=$2; shift 2 ;;
    --file) FILE=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --events) EVENTS=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
B=build/bench
RAPPORTD=$B/daemon/rapportd LOADGEN=$B/bench/rapport-loadgen
[ -x "$RAPPORTD" ] && [ -x "$LOADGEN" ] || { echo "run bench/run.sh first (no binaries in $B)" >&2; exit 1; }
W=$ROOT/$B/work/writer_profile
rm -rf "$W"; mkdir -p "$W"
[ -n "$FILE" ] || FILE=$ROOT/$B/work/events.ndjson
[ -f "$FILE" ] || { echo "no events file $FILE (bench/run.sh writes one; or give --file)" >&2; exit 1; }
OUT=bench/results/writer_profile.md
TCK=$(getconf CLK_TCK)
pid="" lg=""
cleanup() {
  [ -n "$lg" ] && kill -TERM "$lg" 2>/dev/null || true
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
}
trap cleanup EXIT
accepted() { curl -s -m 10 "http://$HTTP/metrics" | awk '$1 ~ /^rapport_events_accepted_total/ {s += $2} END {printf "%d", s}'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
threads() { for t in /proc/"$pid"/task/*; do echo "$(basename "$t") $(cut -d' ' -f1-2 "$t/schedstat" 2>/dev/null)"; done; }

{
  echo "## One writer's cost, P = ${PARTS// /, } (bench/writer_profile.sh)"
  echo
  echo "Closed-loop TCP ingest (4 connections, 1000 lines/write) of \`$(basename "$FILE")\` cycled with fresh event ids, a fresh"
  echo "rapportd per P; figures over ${SECS} s after a 6 s warm-up. Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
} >"$OUT"
for P in $PARTS; do
  printf '[storage]\npartitions = %s\n' "$P" >"$W/p$P.toml"
  rm -rf "$W/state"
  "$RAPPORTD" --http 127.0.0.1:0 --tcp 127.0.0.1:0 --state-dir "$W/state" --config "$W/p$P.toml" 2>"$W/daemon.log" &
  pid=$!
  for _ in $(seq 600); do grep -q listening "$W/daemon.log" 2>/dev/null && break; sleep 0.1; done
  HTTP=$(sed -n 's/.*listening http=\([^ ]*\) tcp=.*/\1/p' "$W/daemon.log")
  TCP=$(sed -n 's/.*listening http=[^ ]* tcp=\(.*\)$/\1/p' "$W/daemon.log")
  "$LOADGEN" --tcp "$TCP" --http "$HTTP" -q --no-verify --mode tcp -c 4 --batch 1000 --file "$FILE" -n "$EVENTS" \
    --duration $((SECS + 8)) >"$W/load.txt" 2>&1 &
  lg=$!
  sleep 6
  # perf runs beside the sampled window (its own teardown takes a while and must not stretch the window)
  perf record -F 999 -o "$W/perf.data" -p "$pid" -- sleep "$SECS" >/dev/null 2>&1 &
  pf=$!
  w0=$(date +%s.%N); threads >"$W/t0"; a0=$(accepted); l0=$(ticks "$lg"); d0=$(ticks "$pid"); m0=$(busy)
  sleep "$SECS"
  threads >"$W/t1"; a1=$(accepted); l1=$(ticks "$lg"); d1=$(ticks "$pid"); m1=$(busy); w1=$(date +%s.%N)
  SECS_W=$(awk -v a="$w1" -v b="$w0" 'BEGIN {printf "%.3f", a - b}')
  wait "$pf" || true
  wait "$lg" || true; lg=""
  n=$((a1 - a0)) total=$(accepted)
  {
    echo "### P = $P"
    echo
    awk -v n="$n" -v s="$SECS_W" -v l="$((l1 - l0))" -v d="$((d1 - d0))" -v m="$((m1 - m0))" -v t="$TCK" 'BEGIN {
      printf "%d events/s accepted; rapportd %.2f cores (%.2f µs/event), rapport-loadgen %.2f cores (%.2f µs/event), machine busy %.2f of 2 cores (other processes %.2f)\n\n",
        n / s, d / t / s, d / t / n * 1e6, l / t / s, l / t / n * 1e6, m / t / s, (m - d - l) / t / s }'
    echo "| thread | on CPU | waiting for a CPU | µs on CPU per accepted event |"
    echo "|---|---|---|---|"
    # join: tid run0 wait0 run1 wait1 (ns); printf %.0f, not print (mawk prints large numbers as 5e+09)
    join <(sort "$W/t0") <(sort "$W/t1") | awk -v s="$SECS_W" '{c = $4 - $2; if (c / s / 1e7 >= 1) printf "%.0f %.0f %s\n", c, $5 - $3, $1}' |
      sort -rn | awk -v n="$n" -v s="$SECS_W" '{printf "| %s | %.0f %% | %.0f %% | %.2f |\n", $3, $1 / s / 1e7, $2 / s / 1e7, $1 / 1e3 / n}'
    top=$(join <(sort "$W/t0") <(sort "$W/t1") | awk '{printf "%.0f %s\n", $4 - $2, $1}' | sort -rn | awk 'NR == 1 {print $2}')
    echo
    echo "perf, busiest thread ($top), self time:"
    echo
    echo '```'
    perf report -i "$W/perf.data" --tid "$top" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -v '^#' |
      sed -E '/^$/d; s/[[:space:]]+$//; s/^(.{140}).*/\1…/' | head -18 || true
    echo '```'
    echo
  } >>"$OUT"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  {
    echo "Disk after a clean stop: \`du -sb\` $(du -sb "$W/state" | cut -f1) bytes for $total stored events ($(du -sb "$W/state" | awk -v n="$total" '{printf "%.0f", $1 / n}') B/event)."
    echo "Pages per named database (\`mdb_stat -efa\`, all partitions summed: branch + leaf + overflow pages × page size;"
    echo "*free* = pages on LMDB's freelist, *unused* = the rest of the file):"
    echo
    echo "| database | entries | bytes | bytes per stored event |"
    echo "|---|---|---|---|"
    for d in "$W/state" "$W"/state/partitions/*; do
      [ -f "$d/data.mdb" ] && { mdb_stat -efa "$d"; echo "File bytes: $(stat -c %s "$d/data.mdb")"; }
    done 2>/dev/null | awk -v n="$total" '
      /^Freelist Status/ {db = "free"} /^Status of / {db = $3} /^Status of Main DB/ {db = "(main)"}
      /^  Page size:/ {ps = $3} /^  Number of pages used:/ {used += $5}
      /Branch pages:|Leaf pages:|Overflow pages:/ {if (db != "free") {pages[db] += $3; all += $3}}
      /Free pages:/ {pages["free"] += $3; all += $3}
      /^  Entries:/ {if (db != "free") ent[db] += $2}
      /^File bytes:/ {file += $3}
      END {for (d in pages) printf "| %s | %.0f | %.0f | %.1f |\n", d, ent[d], pages[d] * ps, pages[d] * ps / n
           printf "| unused (file − the above) | | %.0f | %.1f |\n", file - all * ps, (file - all * ps) / n
           printf "| **data.mdb files** | | %.0f | %.1f |\n", file, file / n}' | sort
    echo
  } >>"$OUT"
  rm -rf "$W/state" "$W/perf.data"
done
echo "wrote $OUT"
