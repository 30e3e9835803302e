#!/usr/bin/env bash
# A/B of acknowledgement stalls: two rapportd binaries (e.g. before and after a
# storage change) under the same open-loop TCP ingest, alternating, each run
# on a fresh state dir. Reports per run and as medians: events/s achieved,
# ack latency p50/p99/p99.9/max, and the seconds in which no event was
# acknowledged (checkpoint stalls), into bench/results/checkpoint_ab.md.
#
#   bench/checkpoint_ab.sh BASELINE_RAPPORTD OURS_RAPPORTD [--rate 50000] [--seconds 90]
#                          [--reps 3] [--customers 1000000] [--loadgen PATH] [--checkpoint-events N]
#
# Build the two binaries first (Release), e.g. a git worktree of the old commit
# built into /tmp/base/build and this tree into build/perf.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,13p' "$0"; exit 2; }
BASE=$(realpath "$1") OURS=$(realpath "$2"); shift 2
RATE=50000 SECONDS_=90 REPS=3 CUSTOMERS=1000000 LOADGEN=build/perf/bench/rapport-loadgen CKPT=""
while [ $# -gt 0 ]; do
  case $1 in
    --rate) RATE=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --customers) CUSTOMERS=$2; shift 2 ;;
    --loadgen) LOADGEN=$2; shift 2 ;;
    --checkpoint-events) CKPT=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
WORK=$(mktemp -d /tmp/rapport-ckpt-ab.XXXXXX)
RES=bench/results
mkdir -p "$RES"
pid=""
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

run_one() {  # binary label rep
  local bin=$1 label=$2 rep=$3 conf="$WORK/rapport.toml"
  rm -rf "$WORK/state"; : >"$WORK/daemon.log"
  # No scheduled value-model fits: they would compete for the CPU and blur what is compared.
  printf '[value]\nfit_interval_s = 0\n' >"$conf"
  [ -n "$CKPT" ] && printf '[storage]\ncheckpoint_events = %s\n' "$CKPT" >>"$conf"
  "$bin" --config "$conf" --http 127.0.0.1:0 --tcp 127.0.0.1:0 --state-dir "$WORK/state" 2>"$WORK/daemon.log" &
  pid=$!
  for _ in $(seq 300); do grep -q "listening http" "$WORK/daemon.log" 2>/dev/null && break; sleep 0.1; done
  local http tcp
  http=$(sed -n 's/.*listening http=\([^ ]*\) tcp=.*/\1/p' "$WORK/daemon.log")
  tcp=$(sed -n 's/.*listening http=[^ ]* tcp=\(.*\)$/\1/p' "$WORK/daemon.log")
  "$LOADGEN" --mode tcp --tcp "$tcp" --http "$http" --customers "$CUSTOMERS" -n 2000000 --seed 7 -c 4 \
    --rate "$RATE" --batch 100 --duration "$SECONDS_" --report-interval 1 \
    --interval-file "$WORK/intervals.jsonl" --json -q --label "$label" >"$WORK/summary.json"
  kill -TERM "$pid"; wait "$pid" || true; pid=""
  python3 - "$WORK/summary.json" "$WORK/intervals.jsonl" "$label" "$rep" >>"$WORK/runs.jsonl" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
iv = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
stalled = sum(1 for i in iv if i.get("answers", 0) == 0)
print(json.dumps({"label": sys.argv[3], "rep": int(sys.argv[4]), "events_per_s": s["events_per_s"],
                  "p50": s["latency_ms"]["p50"], "p99": s["latency_ms"]["p99"], "p999": s["latency_ms"]["p999"],
                  "max": s["latency_ms"]["max"], "stalled_s": stalled, "seconds": len(iv),
                  "verify_ok": s.get("verify", {}).get("ok")}))
EOF
  log "$label #$rep: $(tail -n 1 "$WORK/runs.jsonl")"
}

for rep in $(seq "$REPS"); do
  run_one "$BASE" baseline "$rep"
  run_one "$OURS" ours "$rep"
done

python3 - "$WORK/runs.jsonl" "$RATE" "$SECONDS_" "$CUSTOMERS" "$REPS" "${CKPT:-default}" \
  "$BASE" "$OURS" >"$RES/checkpoint_ab.md" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
rate, secs, customers, reps, ckpt, base, ours = sys.argv[2:9]
cols = ["events_per_s", "p50", "p99", "p999", "max", "stalled_s"]
med = {lab: {c: statistics.median(r[c] for r in runs if r["label"] == lab) for c in cols}
       for lab in ("baseline", "ours")}
print("## Checkpoint stalls: A/B\n")
print(f"`bench/checkpoint_ab.sh {base} {ours} --rate {rate} --seconds {secs} --reps {reps} "
      f"--customers {customers}" + ("" if ckpt == "default" else f" --checkpoint-events {ckpt}") + "`: "
      f"open-loop TCP ingest at {int(rate):,} events/s, 4 connections, 100 lines/write, {customers} "
      f"customers (Zipf 1.1), fresh state dir per run, the two binaries alternating. Medians of {reps} runs "
      "(latency in ms, from the intended send time; *stalled s* = seconds in which no event was acknowledged).\n")
print("| binary | events/s | p50 | p99 | p99.9 | max | stalled s |")
print("|---|---|---|---|---|---|---|")
for lab in ("baseline", "ours"):
    m = med[lab]
    print(f"| {lab} | {m['events_per_s']:,.0f} | {m['p50']:.1f} | {m['p99']:.1f} | {m['p999']:.1f} | "
          f"{m['max']:.1f} | {m['stalled_s']:.0f} |")
b, o = med["baseline"], med["ours"]
print(f"\nRatios ours ÷ baseline: events/s {o['events_per_s'] / b['events_per_s']:.2f}, p99 "
      f"{o['p99'] / b['p99']:.2f}, p99.9 {o['p999'] / b['p999']:.2f}, max {o['max'] / b['max']:.2f}.\n")
print("Every run:\n")
print("| binary | run | events/s | p50 | p99 | p99.9 | max | stalled s | verify |")
print("|---|---|---|---|---|---|---|---|---|")
for r in runs:
    print(f"| {r['label']} | {r['rep']} | {r['events_per_s']:,} | {r['p50']:.1f} | {r['p99']:.1f} | {r['p999']:.1f} | "
          f"{r['max']:.1f} | {r['stalled_s']} | {r['verify_ok']} |")
EOF
cat "$RES/checkpoint_ab.md"
