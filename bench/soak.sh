#!/usr/bin/env bash
# Soak: rapportd under a steady open-loop TCP load at half the peak rate for N
# minutes, sampling every second its RSS (VmRSS and RssAnon), open fds,
# threads, CPU, ingest rate, queue depth and the interval's p99 ack latency
# (daemon side from /metrics; client side from rapport-loadgen's interval
# reports), into bench/results/soak.csv + bench/soak.png, then a summary
# (flat or not) in bench/results/soak_summary.md, included in bench/RESULTS.md.
#
#   bench/soak.sh [--minutes 10] [--rate EVENTS_PER_S | --fraction 0.5] [--connections 4]
#                 [--tag NAME] [--no-build]
#
# Without --rate: --fraction (default 0.5, "half the peak") of the median of the
# TCP 4-connection runs in bench/results/results.jsonl (bench/run.sh), else of
# a 15 s closed-loop run measured first. --tag NAME keeps the files of several
# soaks apart (results/soak_NAME.csv, soak_NAME.png, results/soak_summary_NAME.md). Events: generated (1 M customers, Zipf 1.1), a pool of
# 2 M cycled with fresh event_ids, so every event is new to the daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MINUTES=10 RATE="" CONNS=4 BUILD=1 FRACTION=0.5 TAG=""
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) MINUTES=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    --fraction) FRACTION=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
B=build/bench
if [ "$BUILD" = 1 ]; then
  cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DRAPPORT_TESTS=OFF -DRAPPORT_BENCH=ON -DRAPPORT_WERROR=OFF >/dev/null
  cmake --build $B -j "$(nproc)" --target rapportd rapport-loadgen >$B.soak-build.log 2>&1 ||
    { tail -20 $B.soak-build.log >&2; exit 1; }
fi
command -v gnuplot >/dev/null || echo "gnuplot missing (bench/run.sh installs it): no PNG" >&2
RES=bench/results
SUF=${TAG:+_$TAG}
WORK=$ROOT/$B/soak$SUF
rm -rf "$WORK"
mkdir -p "$RES" "$WORK"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

pid=""
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; }
trap cleanup EXIT
start_daemon() {
  rm -rf "$WORK/state"
  : >"$WORK/daemon.log"
  $B/daemon/rapportd --http 127.0.0.1:0 --tcp 127.0.0.1:0 --state-dir "$WORK/state" 2>"$WORK/daemon.log" &
  pid=$!
  for _ in $(seq 300); do grep -q "listening" "$WORK/daemon.log" 2>/dev/null && break; sleep 0.1; done
  HTTP=$(sed -n 's/.*listening http=\([^ ]*\) tcp=.*/\1/p' "$WORK/daemon.log")
  TCP=$(sed -n 's/.*listening http=[^ ]* tcp=\(.*\)$/\1/p' "$WORK/daemon.log")
  for _ in $(seq 300); do curl -sf -m 1 "http://$HTTP/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
}
LG=($B/bench/rapport-loadgen --customers 1000000 -n 2000000 --seed 11 -c "$CONNS")

if [ -z "$RATE" ] && [ -f "$RES/results.jsonl" ]; then
  PEAK=$(python3 - "$RES/results.jsonl" <<'EOF'
import json, statistics, sys
v = [json.loads(l)["loadgen"]["events_per_s"] for l in open(sys.argv[1])
     if '"config":"tcp_c4"' in l.replace(" ", "") and json.loads(l).get("loadgen")]
print(int(statistics.median(v)) if v else "")
EOF
)
  if [ -n "$PEAK" ]; then
    RATE=$(awk -v p="$PEAK" -v f="$FRACTION" 'BEGIN {printf "%d", p * f}')
    PEAK_SRC="$FRACTION × the median TCP 4-connection rate of bench/run.sh, $PEAK events/s"
  fi
fi
if [ -z "$RATE" ]; then
  log "measuring the peak (15 s closed loop)"
  start_daemon
  peak=$("${LG[@]}" --mode tcp --tcp "$TCP" --http "$HTTP" --duration 15 --json -q |
    python3 -c 'import json,sys; print(int(json.load(sys.stdin)["events_per_s"]))')
  kill -TERM "$pid"; wait "$pid" || true; pid=""
  RATE=$(awk -v p="$peak" -v f="$FRACTION" 'BEGIN {printf "%d", p * f}')
  PEAK_SRC="$FRACTION × a 15 s closed-loop TCP run measured just before, $peak events/s"
fi
[ -n "${PEAK_SRC:-}" ] || PEAK_SRC="given with --rate"

log "soak: $MINUTES min at $RATE events/s over $CONNS TCP connections"
start_daemon
rm -f "$WORK/stop"
python3 bench/soak_sample.py "$pid" "$HTTP" "$RES/soak$SUF.csv" --until-file "$WORK/stop" &
sampler=$!
CMD=("${LG[@]}" --mode tcp --tcp "$TCP" --http "$HTTP" --rate "$RATE" --batch 100 --duration "$(awk -v m="$MINUTES" 'BEGIN {print m * 60}')"
     --report-interval 1 --interval-file "$RES/soak${SUF}_loadgen.jsonl" --json -q --label "soak$SUF")
rc=0
out=$("${CMD[@]}") || rc=$?
sleep 2
touch "$WORK/stop"
wait "$sampler" || true
final_rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status")
kill -TERM "$pid"; wait "$pid" || true; pid=""
rm -rf "$WORK/state"  # tens of GB after a long soak
echo "$out" >"$RES/soak${SUF}_loadgen_summary.json"

python3 - "$RES" "$MINUTES" "$RATE" "$rc" "$PEAK_SRC" "rapport-loadgen ${CMD[*]:1}" "$SUF" "$TAG" <<'EOF'
import csv, json, os, statistics, sys
res, minutes, rate, rc, peak_src, cmd = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
suf, tag = sys.argv[7], sys.argv[8]
cmd = cmd.replace(os.getcwd() + "/", "")
rows = list(csv.DictReader(open(os.path.join(res, f"soak{suf}.csv"))))
lg = [json.loads(l) for l in open(os.path.join(res, f"soak{suf}_loadgen.jsonl")) if l.strip()]
try:
    summary = json.load(open(os.path.join(res, f"soak{suf}_loadgen_summary.json")))
except Exception:
    summary = None
# client-side p99 per second, joined by nearest second, into the CSV used for the plot
by_t = {round(r["unix"]): r for r in lg}
with open(os.path.join(res, f"soak{suf}_plot.dat"), "w") as f:
    f.write("# t rss_mb anon_mb fds events_per_s daemon_p99_ms loadgen_p99_ms\n")
    for r in rows:
        t = float(r["t_s"])
        c = by_t.get(round(float(r["unix_s"])))
        f.write(f"{t} {r['rss_mb']} {r['anon_mb']} {r['fds']} {r['events_per_s']} "
                f"{r['daemon_p99_ms'].rstrip('+') or 'NaN'} {c['p99_ms'] if c else 'NaN'}\n")

def slope(xs, ys):
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0

t = [float(r["t_s"]) for r in rows]
anon = [float(r["anon_mb"]) for r in rows]
rss = [float(r["rss_mb"]) for r in rows]
fds = [int(r["fds"]) for r in rows]
warm = [i for i, x in enumerate(t) if x >= 0.2 * (t[-1] if t else 0)]
ta = [t[i] for i in warm]
s_anon = slope(ta, [anon[i] for i in warm]) * 60
s_rss = slope(ta, [rss[i] for i in warm]) * 60
q = len(warm) // 4 or 1
first_q = statistics.median([anon[i] for i in warm[:q]]) if warm else 0
last_q = statistics.median([anon[i] for i in warm[-q:]]) if warm else 0
fd_range = (min(fds[i] for i in warm), max(fds[i] for i in warm)) if warm else (0, 0)
p99s = [float(c["p99_ms"]) for c in lg if c.get("answers")]
dp99 = [float(r["daemon_p99_ms"].rstrip("+")) for r in rows if r["daemon_p99_ms"]]
eps = [float(r["events_per_s"]) for r in rows]
flat_mem = abs(last_q - first_q) <= max(20.0, 0.1 * first_q) and s_anon < 2.0
flat_fds = fd_range[1] - fd_range[0] <= 4
verdict = ("flat" if flat_mem and flat_fds else "NOT flat") + \
          f" (RssAnon {first_q:.0f} → {last_q:.0f} MB, {s_anon:+.2f} MB/min; fds {fd_range[0]}–{fd_range[1]})"
pct = lambda v, p: sorted(v)[min(len(v) - 1, int(p / 100 * len(v)))] if v else float("nan")
L = []
stalled = sum(1 for r in rows if float(r["events_per_s"]) == 0)
L.append("## Soak" + (f" ({tag})" if tag else ""))
L.append("")
L.append(f"`bench/soak.sh --minutes {minutes:g}" + (f" --tag {tag}" if tag else "") + f"`: {minutes:g} min of open-loop TCP ingest at {rate:,} events/s "
         f"({peak_src}), 100 lines/write, sampled every second. Command: `{cmd}`.")
L.append("")
L.append(f"![soak](soak{suf}.png)")
L.append("")
L.append(f"verdict: {verdict}")
L.append("")
L.append("| | |")
L.append("|---|---|")
L.append(f"| samples | {len(rows)} (bench/results/soak{suf}.csv) |")
L.append(f"| achieved events/s, median of 1 s samples | {statistics.median(eps) if eps else 0:,.0f} "
         f"({stalled} seconds with no event acknowledged) |")
if summary:
    L.append(f"| whole run (loadgen) | {summary['events']:,} events, {summary['events_per_s']:,} events/s, "
             f"p50/p99/p99.9 {summary['latency_ms']['p50']:.2f}/{summary['latency_ms']['p99']:.2f}/"
             f"{summary['latency_ms']['p999']:.2f} ms, errors {summary['errors']}, verify "
             f"{'ok' if summary['verify']['ok'] else 'FAILED'} |")
else:
    L.append(f"| whole run (loadgen) | no summary (exit code {rc}) |")
L.append(f"| RssAnon (heap), after 20 % warm-up | first quarter median {first_q:.0f} MB, last quarter {last_q:.0f} MB, "
         f"trend {s_anon:+.2f} MB/min |")
L.append(f"| VmRSS (incl. LMDB pages mapped) | {min(rss) if rss else 0:.0f}–{max(rss) if rss else 0:.0f} MB, "
         f"trend {s_rss:+.2f} MB/min after warm-up |")
L.append(f"| open fds | {min(fds) if fds else 0}–{max(fds) if fds else 0} (after warm-up {fd_range[0]}–{fd_range[1]}) |")
L.append(f"| per-second p99 ack latency, client side | median {statistics.median(p99s) if p99s else float('nan'):.1f} ms, "
         f"95th pct of the seconds {pct(p99s, 95):.1f} ms, worst {max(p99s) if p99s else float('nan'):.1f} ms |")
L.append(f"| per-second p99, daemon histogram (coarse buckets) | median {statistics.median(dp99) if dp99 else float('nan'):.1f} ms, "
         f"worst {max(dp99) if dp99 else float('nan'):.1f} ms |")
L.append("")
open(os.path.join(res, f"soak_summary{suf}.md"), "w").write("\n".join(L) + "\n")
print(verdict)
EOF

if command -v gnuplot >/dev/null; then
  gnuplot <<EOF || true
set terminal pngcairo size 1000,640 font "sans,10"
set output '$ROOT/bench/soak$SUF.png'
set multiplot layout 2,1 title 'rapportd soak: $MINUTES min at $RATE events/s (TCP, open loop)'
set grid
set xlabel 'seconds'
set ylabel 'MB'
set y2label 'open fds'
set ytics nomirror
set y2tics
set y2range [0:*]
set yrange [0:*]
set key top left
plot '$ROOT/$RES/soak${SUF}_plot.dat' using 1:2 with lines lw 2 title 'VmRSS', \
     '' using 1:3 with lines lw 2 title 'RssAnon', \
     '' using 1:4 axes x1y2 with lines lw 1 title 'fds'
set ylabel 'p99 ack latency per second, ms'
set y2label 'events/s'
set logscale y
set yrange [*:*]
plot '$ROOT/$RES/soak${SUF}_plot.dat' using 1:7 with lines lw 1 title 'p99 (loadgen)', \
     '' using 1:6 with lines lw 1 title 'p99 (daemon histogram)', \
     '' using 1:5 axes x1y2 with lines lw 1 lc rgb '#999999' title 'events/s'
unset multiplot
EOF
fi
# The summary goes into RESULTS.md (rebuilt from bench/results/ when run.sh has produced results there).
if [ -f "$RES/results.jsonl" ]; then
  python3 bench/report.py >/dev/null
else
  cat "$RES/soak_summary$SUF.md" >>bench/RESULTS.md
fi
log "soak done: $(grep '^verdict' "$RES/soak_summary$SUF.md")"
exit "$rc"
