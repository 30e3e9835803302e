#!/usr/bin/env bash
# End-to-end benchmark of rapportd beside its baselines, in one run, on the same
# events (see bench/README.md):
#   - installs what is missing (apt-get, --no-install-recommends): postgresql,
#     redis-server, nginx-light (else nginx), gnuplot-nox, hyperfine (+ linux-perf
#     for the profiles);
#   - builds Release binaries in build/bench;
#   - generates the events once (rapportctl generate, no duplicates) and
#     converts them for the baselines (bench/convert_events.py);
#   - runs every configuration REPEATS times, each ingest run against a fresh
#     rapportd (empty state dir, default config: durability fsync) driven by
#     rapport-loadgen from its own process; PostgreSQL 15 and Redis 7 started
#     by bench/pg_baseline.sh and bench/redis_baseline.sh; the physical
#     references: rapport-sink (loopback read + decode + ack, no storage) and
#     the decoder Google Benchmark;
#   - issue 13's goals: TCP ingest with `[storage] partitions = P` for each P of
#     --partitions on both workloads (the Zipf file and the "hot" file: 20 % of
#     the events on 1 % of the customers, bench/hot_events.py); the store-growth
#     run (a fresh rapportd filled with 10 M other events of the hot kind, then
#     the rate of the hot file; --long adds 50 M) beside the same file on an
#     empty store; bytes per stored event (du of the whole state dir); point
#     queries beside nginx serving a customer's JSON as a static file, with the
#     same load generator in the same run; POST /v1/customers:batchGet
#     (customers/s); PostgreSQL doing the whole job with dedup
#     (bench/pg_dedup_baseline.sh) beside the aggregate-only baseline;
#     --long also runs bench/soak.sh --minutes 30;
#   - profiles rapportd with perf where the targets are missed;
#   - writes the raw results to bench/results/ and bench/RESULTS.md + PNGs
#     via bench/report.py (re-run `python3 bench/report.py` to rebuild the
#     report from bench/results/ without re-measuring).
#
#   bench/run.sh [--quick | --long] [--events N] [--repeats R] [--duration S] [--mem-customers N]
#                [--partitions "1 2 4"] [--fills "10000000 50000000"] [--only SECTIONS]
#                [--no-install] [--no-baselines] [--no-profile]
#
# --quick: fewer events, connections, load points and repeats (1), a 1 M-event
# store-growth fill (at most 10 minutes on the 2-core machine).
# --long: also the 50 M-event store-growth run and the 30-minute soak.
# --partitions: the P of the partition runs ("default": no [storage] partitions
# key, for a rapportd without partitions).
# --fills: the store-growth fills (events stored before the timed file).
# --only: a comma-separated subset of decode,tcp,partitions,growth,queries,openloop,
# import,memory,baselines,profiles,soak; the records of the sections run replace
# their earlier records in bench/results/results.jsonl, the others are kept
# (e.g. `bench/run.sh --only growth,soak --fills 50000000 --long` re-measures
# goals 2 and 5b of issue 13 alone).
# --duration: seconds per timed run of the duration-based configurations
# (HTTP single, queries, open loop); --mem-customers: customers of the memory run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0 LONG=0 INSTALL=1 BASELINES=1 PROFILE=1 EVENTS="" REPEATS="" OPT_DURATION="" OPT_MEM="" PARTITIONS="1 2 4"
OPT_FILLS="" ONLY=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1; shift ;;
    --long) LONG=1; shift ;;
    --partitions) PARTITIONS=$2; shift 2 ;;
    --fills) OPT_FILLS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --events) EVENTS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --no-baselines) BASELINES=0; shift ;;
    --no-profile) PROFILE=0; shift ;;
    --duration) OPT_DURATION=$2; shift 2 ;;
    --mem-customers) OPT_MEM=$2; shift 2 ;;
    -h|--help) sed -n '2,48p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$QUICK" = 1 ] && [ "$LONG" = 1 ] && { echo "--quick and --long exclude each other" >&2; exit 2; }
SECTIONS=decode,tcp,partitions,growth,queries,openloop,import,memory,baselines,profiles,soak
for sec in ${ONLY//,/ }; do
  [[ ",$SECTIONS," == *",$sec,"* ]] || { echo "--only: unknown section '$sec' (one of $SECTIONS)" >&2; exit 2; }
done
want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }
if [ "$QUICK" = 1 ]; then
  EVENTS=${EVENTS:-500000}
  CUSTOMERS=200000
  CONNS=(1 4)
  SINGLE_CONNS=(64)
  QUERY_CONNS=(16)
  LOAD_FRACTIONS=(0.5)
  DURATION=4
  MEM_CUSTOMERS=1000000
  PG_BATCH=50000
  REPEATS=${REPEATS:-1}
  GROWTH_FILLS=(1000000)
else
  EVENTS=${EVENTS:-2000000}
  CUSTOMERS=1000000
  CONNS=(1 4 16 64)
  SINGLE_CONNS=(16 64 256)
  QUERY_CONNS=(16 64)
  LOAD_FRACTIONS=(0.1 0.25 0.5 0.75 0.9)
  DURATION=10
  MEM_CUSTOMERS=10000000
  PG_BATCH=50000
  GROWTH_FILLS=(10000000)
  [ "$LONG" = 1 ] && GROWTH_FILLS+=(50000000)
fi
REPEATS=${REPEATS:-3}
[ -n "$OPT_FILLS" ] && read -r -a GROWTH_FILLS <<<"$OPT_FILLS"
FILL_CHUNK=2000000  # the growth fill is generated and sent in files of this many events
DURATION=${OPT_DURATION:-$DURATION}
MEM_CUSTOMERS=${OPT_MEM:-$MEM_CUSTOMERS}
HEADLINE_CONNS=4   # the configuration compared with the baselines

# ---------------------------------------------------------------- install
if [ "$INSTALL" = 1 ]; then
  missing=()
  for p in postgresql redis-server gnuplot-nox hyperfine linux-perf python3 procps curl; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        $(printf '%s\n' "${missing[@]}" | grep -v linux-perf | sed 's/^nginx-light$/nginx/') >/dev/null
  fi
  # Debian's postgresql package may start a cluster of its own; we start ours, so leave theirs alone.
  make -s deps
fi

# ---------------------------------------------------------------- build
B=build/bench
build() {
  cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DRAPPORT_TESTS=OFF -DRAPPORT_BENCH=ON -DRAPPORT_WERROR=OFF \
    $(command -v ccache >/dev/null && echo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache) >/dev/null &&
    cmake --build $B -j "$(nproc)" --target rapportd rapportctl rapport-loadgen rapport-sink rapport_bench >$B.build.log 2>&1
}
mkdir -p build
for attempt in 1 2 3 4; do
  build && break
  [ "$attempt" = 4 ] && { tail -30 $B.build.log >&2; echo "build failed" >&2; exit 1; }
  echo "build failed (files mid-edit?); retrying in 180 s" >&2
  sleep 180
done
RAPPORTD=$B/daemon/rapportd
RAPPORTCTL=$B/daemon/rapportctl
LOADGEN=$B/bench/rapport-loadgen
SINK=$B/bench/rapport-sink
BENCHBIN=$B/bench/rapport_bench

# ---------------------------------------------------------------- results
RES=bench/results
WORK=$ROOT/$B/work
rm -rf "$WORK"
mkdir -p "$RES" "$WORK"
JSONL=$RES/results.jsonl
if [ -z "$ONLY" ]; then
  rm -f "$RES"/results.jsonl "$RES"/commands.txt "$RES"/profile_*.txt "$RES"/machine.json "$RES"/interval_*.jsonl
elif [ -f "$JSONL" ]; then  # --only: drop the earlier records of the sections that run now, keep the rest
  python3 - "$JSONL" "$ONLY" <<'EOF'
import json, sys
path, only = sys.argv[1], set(sys.argv[2].split(","))
def section(r):
    kind, c = r.get("kind"), r.get("config") or ""
    if kind == "decode" or c.startswith("sink_"): return "decode"
    if c.startswith("growth_"): return "growth"
    if c.startswith(("tcp_hot_", "tcp_zipf_")): return "partitions"
    if c.startswith(("tcp_c", "http_")): return "tcp"
    if kind == "nginx" or c.startswith(("query_", "batchget_", "preload")): return "queries"
    if c.startswith("open_"): return "openloop"
    if kind == "import": return "import"
    if kind == "memory" or c.startswith("memory_"): return "memory"
    if kind == "baseline": return "baselines"
    return None
keep = [l for l in open(path) if l.strip() and section(json.loads(l)) not in only]
open(path, "w").writelines(keep)
EOF
fi
CMDS=$RES/commands.txt
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
note_cmd() { grep -qxF -- "$*" "$CMDS" 2>/dev/null || echo "$*" >>"$CMDS"; }
T_START=$(date +%s)

# ---------------------------------------------------------------- machine
state_fs=$(df -P "$WORK" | awk 'NR==2 {print $1}')
disk_dev=$(basename "$state_fs")
rot=$(cat "/sys/block/${disk_dev%%[0-9]*}/queue/rotational" 2>/dev/null || echo "?")
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
fsync_rate=$(timeout 60 "$PGBIN/pg_test_fsync" -s 2 -f "$WORK/fsync.test" 2>/dev/null |
  awk '/Compare file sync methods using one 8kB write/ {f=1} f && $1 == "fdatasync" {print $2; exit}' || true)
rm -f "$WORK/fsync.test"
MACHINE_JSON=$RES/machine.json
[ -n "$ONLY" ] && MACHINE_JSON=$RES/machine_only.json  # the full run's machine.json stays with its records
python3 - "$MACHINE_JSON" <<EOF
import json, os, platform, subprocess, sys
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return ""
json.dump({
  "cores": os.cpu_count(),
  "cpu_model": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
  "mem_gb": round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30, 1),
  "kernel": platform.release(),
  "os": sh(". /etc/os-release && echo \$PRETTY_NAME"),
  "disk": sh("df -hPT $WORK | awk 'NR==2 {print \$1\" \"\$2\" \"\$3\" size, \"\$5\" free\"}'"),
  "rotational": "$rot",
  "fdatasync_per_s": "$fsync_rate",
  "loadavg_start": open('/proc/loadavg').read().split()[:3],
  "date": sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
  "git": sh("git rev-parse --short HEAD") + (" + uncommitted changes" if sh("git status --porcelain -uno") else ""),
  "quick": $QUICK, "long": $LONG, "only": "$ONLY", "events": $EVENTS, "customers": $CUSTOMERS, "repeats": $REPEATS,
  "partitions": "$PARTITIONS", "growth_fills": "${GROWTH_FILLS[*]}",
  "nginx": sh("(nginx -v || /usr/sbin/nginx -v) 2>&1 | head -1"),
  "postgresql": sh("$PGBIN/postgres --version"),
  "redis": sh("redis-server --version"),
  "compiler": sh("c++ --version | head -1"),
}, open(sys.argv[1], "w"), indent=1)
EOF
log "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), fdatasync/s ${fsync_rate:-?}"

# ---------------------------------------------------------------- helpers
TCK=$(getconf CLK_TCK)
pid="" HTTP="" TCP=""
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  [ -n "${sink_pid:-}" ] && kill -TERM "$sink_pid" 2>/dev/null && wait "$sink_pid" 2>/dev/null || true
  [ -n "${nginx_pid:-}" ] && kill -TERM "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null || true
}
trap cleanup EXIT

start_daemon() {  # [extra rapportd flags]; fresh state dir unless KEEP_STATE=1
  local attempt
  for attempt in 1 2; do
    [ "${KEEP_STATE:-0}" = 1 ] || rm -rf "$WORK/state"
    : >"$WORK/daemon.log"  # truncate here: the child truncates it only after the fork, racing the grep below
    # DAEMON_CONFIG: a config file for this daemon (the partition runs).
    "$RAPPORTD" --http 127.0.0.1:0 --tcp 127.0.0.1:0 --state-dir "$WORK/state" \
      ${DAEMON_CONFIG:+--config "$DAEMON_CONFIG"} "$@" 2>"$WORK/daemon.log" &
    pid=$!
    # Up to 2 minutes: on the shared machine a start (or the previous daemon's exit) can be slow.
    for _ in $(seq 1200); do
      grep -q "listening" "$WORK/daemon.log" 2>/dev/null && break
      kill -0 "$pid" 2>/dev/null || break  # exited (e.g. a config it refuses): its log says why
      sleep 0.1
    done
    HTTP=$(sed -n 's/.*listening http=\([^ ]*\) tcp=.*/\1/p' "$WORK/daemon.log")
    TCP=$(sed -n 's/.*listening http=[^ ]* tcp=\(.*\)$/\1/p' "$WORK/daemon.log")
    if [ -n "$HTTP" ]; then
      for _ in $(seq 600); do curl -sf -m 1 "http://$HTTP/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
    fi
    log "rapportd did not get ready (attempt $attempt): $(tail -3 "$WORK/daemon.log" | tr '\n' ' ')"
    if ! kill -0 "$pid" 2>/dev/null && grep -q "configuration" "$WORK/daemon.log"; then
      echo "rapportd refused its configuration${DAEMON_CONFIG:+ ($DAEMON_CONFIG: $(tr '\n' ' ' <"$DAEMON_CONFIG"))}" >&2
      exit 1
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  done
  echo "rapportd did not start" >&2
  exit 1
}
stop_daemon() {
  local t0; t0=$(date +%s.%N)
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
  STOP_S=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.3f", a - b}')
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
div() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
rss_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# Runs rapport-loadgen against the running daemon and appends a record.
#   measure CONFIG REPEAT loadgen-args...
measure() {
  local config=$1 repeat=$2; shift 2
  local d0 m0 load out rc=0
  d0=$(cpu_ticks "$pid"); m0=$(busy_ticks); load=$(cut -d' ' -f1 /proc/loadavg)
  local w0; w0=$(date +%s.%N)
  note_cmd "rapport-loadgen $*"
  out=$("$LOADGEN" --tcp "$TCP" --http "$HTTP" --json -q --label "$config" "$@" 2>>"$WORK/loadgen.err") || rc=$?
  local d1 m1 wall; d1=$(cpu_ticks "$pid"); m1=$(busy_ticks)
  wall=$(awk -v a="$(date +%s.%N)" -v b="$w0" 'BEGIN {printf "%.3f", a - b}')
  [ -n "$out" ] || out=null
  # The writer's view since the daemon started (fresh daemon per ingest run): group commits and their durations.
  local commits
  commits=$(curl -s -m 5 "http://$HTTP/metrics" | awk '
    /^rapport_commit_batch_events_sum/ {bs = $2} /^rapport_commit_batch_events_count/ {bc = $2}
    /^rapport_commit_duration_seconds_sum/ {ds = $2} /^rapport_commit_duration_seconds_count/ {dc = $2}
    END {printf "{\"commits\":%d,\"events\":%d,\"seconds\":%.3f}", bc, bs, ds}')
  printf '{"kind":"rapport","config":"%s","repeat":%d,"rc":%d,"load1":%s,"wall_s":%s,"daemon_cpu_s":%s,"machine_busy_s":%s,"daemon_rss_kb":%s,"daemon_anon_kb":%s,"writer":%s,"loadgen":%s}\n' \
    "$config" "$repeat" "$rc" "$load" "$wall" "$(div $((d1 - d0)) "$TCK")" "$(div $((m1 - m0)) "$TCK")" \
    "$(rss_kb "$pid" VmRSS)" "$(rss_kb "$pid" RssAnon)" "${commits:-null}" "$out" >>"$JSONL"
  LAST=$out
  local eps; eps=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['events_per_s'] if d else 0)" "$out")
  log "  $config #$repeat: ${eps} events/s (rc $rc)"
  [ "$rc" = 0 ] || tail -3 "$WORK/loadgen.err" >&2
}
median_of() {  # CONFIG FIELD -> median of loadgen.FIELD over the records of CONFIG
  python3 - "$JSONL" "$1" "$2" <<'EOF'
import json, statistics, sys
v = []
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r.get("config") == sys.argv[2] and r.get("loadgen"):
        v.append(r["loadgen"][sys.argv[3]])
print(int(statistics.median(v)) if v else 0)
EOF
}
ingest() {  # CONFIG MODE CONNS [more loadgen args]: REPEATS runs, each on a fresh daemon, the events file once
  local config=$1 mode=$2 conns=$3; shift 3
  for r in $(seq "$REPEATS"); do
    start_daemon
    measure "$config" "$r" --mode "$mode" -c "$conns" --file "${INGEST_FILE:-$EVENTS_FILE}" -n "$EVENTS" "$@"
    stop_daemon
  done
}
partition_config() {  # P -> the path of a config with [storage] partitions = P ("default": no key)
  local f="$WORK/partitions_$1.toml"
  if [ "$1" = default ]; then : >"$f"; else printf '[storage]\npartitions = %s\n' "$1" >"$f"; fi
  echo "$f"
}
metric_sum() {  # NAME: the sum of a counter's series on the running daemon's /metrics
  curl -s -m 10 "http://$HTTP/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%d", s}'
}
hot_events() {  # EVENTS SEED TAG OUT: the "hot" workload (20 % of the events on 1 % of the customers)
  "$RAPPORTCTL" generate --customers "$CUSTOMERS" --events "$1" --seed "$2" --zipf 0 --duplicates 0 |
    python3 bench/hot_events.py --customers "$CUSTOMERS" --tag "$3" --seed "$2" >"$4"
}

# ---------------------------------------------------------------- events
EVENTS_FILE=$WORK/events.ndjson
log "generating $EVENTS events over $CUSTOMERS customers"
note_cmd "rapportctl generate --customers $CUSTOMERS --events $EVENTS --seed 1 --duplicates 0 > events.ndjson"
"$RAPPORTCTL" generate --customers "$CUSTOMERS" --events "$EVENTS" --seed 1 --duplicates 0 >"$EVENTS_FILE"
EVENT_BYTES=$(stat -c %s "$EVENTS_FILE")
HOT_FILE=$WORK/hot.ndjson
log "generating the hot workload: $EVENTS events, 20 % on 1 % of $CUSTOMERS customers"
note_cmd "rapportctl generate --customers $CUSTOMERS --events $EVENTS --seed 1 --zipf 0 --duplicates 0 | python3 bench/hot_events.py --customers $CUSTOMERS --tag m --seed 1 > hot.ndjson"
hot_events "$EVENTS" 1 m "$HOT_FILE"

# ---------------------------------------------------------------- decode-only references
if want decode; then
log "decoder benchmark (one core)"
note_cmd "rapport_bench --benchmark_filter='BM_(DecodeLine|DomParseLine|DecodeBodyNdjson1000|DomParseLines1000)\$' --benchmark_repetitions=$REPEATS --benchmark_format=json"
"$BENCHBIN" --benchmark_filter='BM_(DecodeLine|DomParseLine|DecodeBodyNdjson1000|DomParseLines1000)$' \
  --benchmark_repetitions="$REPEATS" --benchmark_format=json 2>/dev/null >"$WORK/decoder.json" || true
python3 - "$WORK/decoder.json" >>"$JSONL" <<'EOF'
import json, statistics, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    sys.exit(0)
by = {}
for b in d["benchmarks"]:
    if b.get("run_type") == "iteration":
        by.setdefault(b["run_name"], []).append(b)
for name, runs in by.items():
    print(json.dumps({"kind": "decode", "config": name, "runs": len(runs),
                      "items_per_s": statistics.median(r["items_per_second"] for r in runs),
                      "bytes_per_s": statistics.median(r["bytes_per_second"] for r in runs)}))
EOF

log "rapport-sink (loopback + decode, no storage)"
"$SINK" 2>"$WORK/sink.log" &
sink_pid=$!
for _ in $(seq 50); do grep -q listening "$WORK/sink.log" 2>/dev/null && break; sleep 0.1; done
SINK_ADDR=$(sed -n 's/.*tcp=//p' "$WORK/sink.log")
for r in $(seq "$REPEATS"); do
  note_cmd "rapport-loadgen --mode sink --tcp SINK -c $HEADLINE_CONNS --file events.ndjson -n $EVENTS --json"
  d0=$(cpu_ticks "$sink_pid")
  out=$("$LOADGEN" --mode sink --tcp "$SINK_ADDR" -c "$HEADLINE_CONNS" --file "$EVENTS_FILE" -n "$EVENTS" --json -q --label sink)
  d1=$(cpu_ticks "$sink_pid")
  printf '{"kind":"rapport","config":"sink_c%d","repeat":%d,"rc":0,"load1":%s,"daemon_cpu_s":%s,"loadgen":%s}\n' \
    "$HEADLINE_CONNS" "$r" "$(cut -d' ' -f1 /proc/loadavg)" "$(div $((d1 - d0)) "$TCK")" "$out" >>"$JSONL"
done
kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null || true; sink_pid=""

fi  # want

# ---------------------------------------------------------------- rapportd ingest: throughput vs connections
if want tcp; then
for c in "${CONNS[@]}"; do
  log "tcp, $c connections"
  ingest "tcp_c$c" tcp "$c" --batch 1000
done
for c in "${CONNS[@]}"; do
  log "http-batch, $c connections"
  ingest "http_batch_c$c" http-batch "$c" --batch 1000
done
for c in "${SINGLE_CONNS[@]}"; do
  log "http-single, $c connections (${DURATION} s each)"
  for r in $(seq "$REPEATS"); do
    start_daemon
    measure "http_single_c$c" "$r" --mode http-single -c "$c" --file "$EVENTS_FILE" -n "$EVENTS" --duration "$DURATION"
    stop_daemon
  done
done

fi  # want

# ---------------------------------------------------------------- partitions (issue 13): P = 1, 2, 4 on both workloads
if want partitions; then
for P in $PARTITIONS; do
  for workload in hot zipf; do
    log "tcp, $HEADLINE_CONNS connections, $workload workload, partitions $P"
    note_cmd "rapportd --config CONFIG  # [storage] partitions = $P"
    file=$EVENTS_FILE
    [ "$workload" = hot ] && file=$HOT_FILE
    DAEMON_CONFIG=$(partition_config "$P") INGEST_FILE=$file ingest "tcp_${workload}_p${P}_c$HEADLINE_CONNS" tcp \
      "$HEADLINE_CONNS" --batch 1000
  done
done

fi  # want

# ---------------------------------------------------------------- store growth and bytes per event (issue 13)
if want growth; then
# The rate of the hot file on an empty store and after FILL other events of the same kind (default config).
log "store growth: the hot file on an empty store"
INGEST_FILE=$HOT_FILE ingest "growth_empty_c$HEADLINE_CONNS" tcp "$HEADLINE_CONNS" --batch 1000
for fill in "${GROWTH_FILLS[@]}"; do
  log "store growth: $fill events stored first (in files of $FILL_CHUNK), then the hot file"
  start_daemon
  done_events=0 chunk_no=0
  while [ "$done_events" -lt "$fill" ]; do
    n=$((fill - done_events < FILL_CHUNK ? fill - done_events : FILL_CHUNK))
    chunk_no=$((chunk_no + 1))
    note_cmd "rapportctl generate --customers $CUSTOMERS --events $n --seed \$((100 + K)) --zipf 0 --duplicates 0 | python3 bench/hot_events.py --customers $CUSTOMERS --tag fK --seed \$((100 + K)) > fill.ndjson  # K = 1, 2, ... for each file of the fill"
    hot_events "$n" $((100 + chunk_no)) "f$chunk_no" "$WORK/fill.ndjson"
    measure "growth_fill_$fill" "$chunk_no" --mode tcp -c "$HEADLINE_CONNS" --file "$WORK/fill.ndjson" -n "$n" --batch 1000
    done_events=$((done_events + n))
  done
  rm -f "$WORK/fill.ndjson"
  measure "growth_after_${fill}_c$HEADLINE_CONNS" 1 --mode tcp -c "$HEADLINE_CONNS" --file "$HOT_FILE" -n "$EVENTS" \
    --batch 1000
  stored=$(metric_sum rapport_events_accepted_total)
  stop_daemon  # the final checkpoint is on disk before du
  state_bytes=$(du -sb "$WORK/state" | cut -f1)
  line_bytes=$(awk -v b="$(stat -c %s "$HOT_FILE")" -v n="$EVENTS" 'BEGIN {printf "%.1f", b / n}')
  note_cmd "du -sb STATE  # after the growth run, over rapport_events_accepted_total"
  printf '{"kind":"disk","config":"growth_%s","stored_events":%s,"state_dir_bytes":%s,"bytes_per_event":%s,"event_line_bytes":%s}\n' \
    "$fill" "${stored:-0}" "$state_bytes" "$(awk -v a="$state_bytes" -v b="${stored:-0}" 'BEGIN {printf "%.1f", (b > 0 ? a / b : 0)}')" \
    "$line_bytes" >>"$JSONL"
  log "  state dir $state_bytes bytes for $stored stored events"
done

fi  # want

# ---------------------------------------------------------------- point queries
if want queries; then
log "point queries: preload the events, then GET /v1/customers/{id} (ids Zipf-skewed like the events)"
start_daemon
measure "preload" 1 --mode tcp -c 4 --file "$EVENTS_FILE" -n "$EVENTS"
# The anchor (issue 13, goal 6): nginx serving the bytes of one customer's JSON as a static file for every
# /v1/customers/{id}, its own config in a temp dir, as many workers as rapportd has io threads (one per core),
# driven by the same load generator with the same ids, alternating with rapportd.
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
nginx_pid="" NGINX_ADDR=""
if [ -x "$NGINX" ]; then
  NG=$WORK/nginx
  mkdir -p "$NG/www" "$NG/tmp"
  # The most frequent customer of the first 100 k events (no early-exiting reader in the pipe: pipefail).
  top_id=$(head -n 100000 "$EVENTS_FILE" | sed -n 's/.*"customer_id":"\([^"]*\)".*/\1/p' | sort | uniq -c |
    sort -rn | awk 'NR == 1 {print $2}')
  curl -sf "http://$HTTP/v1/customers/$top_id" >"$NG/www/customer.json" || log "GET /v1/customers/$top_id failed"
  ng_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat >"$NG/nginx.conf" <<NGINX_CONF
worker_processes $(nproc);
pid $NG/nginx.pid;
error_log $NG/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $NG/tmp/body; proxy_temp_path $NG/tmp/proxy; fastcgi_temp_path $NG/tmp/fastcgi;
  uwsgi_temp_path $NG/tmp/uwsgi; scgi_temp_path $NG/tmp/scgi;
  keepalive_requests 1000000000; keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$ng_port;
    root $NG/www;
    default_type application/json;
    location / { try_files /customer.json =404; }
  }
}
NGINX_CONF
  chmod -R a+rX "$NG"
  "$NGINX" -c "$NG/nginx.conf" -p "$NG" -g 'daemon off;' 2>"$NG/stderr.log" &
  nginx_pid=$!
  for _ in $(seq 100); do curl -sf -m 1 "http://127.0.0.1:$ng_port/v1/customers/x" >/dev/null 2>&1 && break; sleep 0.1; done
  if curl -sf -m 1 "http://127.0.0.1:$ng_port/v1/customers/x" >/dev/null 2>&1; then
    NGINX_ADDR=127.0.0.1:$ng_port
  else
    log "nginx did not start: $(tail -3 "$NG/error.log" "$NG/stderr.log" 2>/dev/null | tr '\n' ' ')"
  fi
  note_cmd "nginx -c nginx.conf -g 'daemon off;'  # worker_processes $(nproc); try_files /customer.json ($(stat -c %s "$NG/www/customer.json") bytes, GET /v1/customers/$top_id)"
else
  log "no nginx: the query anchor is not measured"
fi
for c in "${QUERY_CONNS[@]}"; do
  for r in $(seq "$REPEATS"); do
    measure "query_c$c" "$r" --mode query -c "$c" --file "$EVENTS_FILE" -n "$EVENTS" --duration "$DURATION"
    if [ -n "$NGINX_ADDR" ]; then
      note_cmd "rapport-loadgen --http NGINX --mode query -c $c --file events.ndjson -n $EVENTS --duration $DURATION"
      out=$("$LOADGEN" --http "$NGINX_ADDR" --mode query -c "$c" --file "$EVENTS_FILE" -n "$EVENTS" \
        --duration "$DURATION" --json -q --label "nginx_query_c$c" 2>>"$WORK/loadgen.err") || true
      printf '{"kind":"nginx","config":"nginx_query_c%d","repeat":%d,"load1":%s,"body_bytes":%s,"loadgen":%s}\n' "$c" "$r" \
        "$(cut -d' ' -f1 /proc/loadavg)" "$(stat -c %s "$NG/www/customer.json")" "${out:-null}" >>"$JSONL"
      log "  nginx_query_c$c #$r: $(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['events_per_s'] if d else 0)" "${out:-null}") req/s"
    fi
  done
done
if [ -n "$nginx_pid" ]; then kill -TERM "$nginx_pid" 2>/dev/null; wait "$nginx_pid" 2>/dev/null || true; nginx_pid=""; fi
log "POST /v1/customers:batchGet, 1000 ids per request (ids Zipf-skewed like the events)"
for r in $(seq "$REPEATS"); do
  measure "batchget_c$HEADLINE_CONNS" "$r" --mode batchget -c "$HEADLINE_CONNS" --batch 1000 --file "$EVENTS_FILE" \
    -n "$EVENTS" --duration "$DURATION"
done
stop_daemon

fi  # want

# ---------------------------------------------------------------- latency vs offered load (open loop)
if want openloop; then
PEAK=$(median_of "tcp_c$HEADLINE_CONNS" events_per_s)
log "latency vs offered load: tcp open loop, fractions of the peak $PEAK events/s"
for f in "${LOAD_FRACTIONS[@]}"; do
  rate=$(python3 -c "print(int($PEAK * $f))")
  for r in $(seq "$REPEATS"); do
    start_daemon
    measure "open_tcp_$f" "$r" --mode tcp -c "$HEADLINE_CONNS" --file "$EVENTS_FILE" -n "$EVENTS" --batch 100 \
      --rate "$rate" --duration "$DURATION"
    stop_daemon
  done
done

fi  # want

# ---------------------------------------------------------------- offline import (hyperfine)
if want import; then
if command -v hyperfine >/dev/null; then
  log "rapportctl import (no network), hyperfine"
  note_cmd "hyperfine --runs $REPEATS --prepare 'rm -rf STATE' 'rapportctl import events.ndjson --state-dir STATE --quiet'"
  hyperfine --runs "$REPEATS" --prepare "rm -rf $WORK/import" --export-json "$WORK/import.json" \
    "$RAPPORTCTL import $EVENTS_FILE --state-dir $WORK/import --quiet" >/dev/null 2>&1 || true
  python3 - "$WORK/import.json" "$EVENTS" >>"$JSONL" <<'EOF'
import json, statistics, sys
try:
    r = json.load(open(sys.argv[1]))["results"][0]
except Exception:
    sys.exit(0)
n = int(sys.argv[2])
print(json.dumps({"kind": "import", "config": "rapportctl_import", "runs": len(r["times"]),
                  "median_s": statistics.median(r["times"]), "events_per_s": n / statistics.median(r["times"])}))
EOF
  rm -rf "$WORK/import"
fi

fi  # want

# ---------------------------------------------------------------- memory with many customers
if want memory; then
log "memory: $MEM_CUSTOMERS customers (every one appears), TCP ingest then restart and queries"
start_daemon
note_cmd "rapport-loadgen --mode tcp -c 4 -n $MEM_CUSTOMERS --customers $MEM_CUSTOMERS --cycle-customers --zipf 0 --seed 7"
measure "memory_ingest" 1 --mode tcp -c 4 -n "$MEM_CUSTOMERS" --customers "$MEM_CUSTOMERS" --cycle-customers --zipf 0 --seed 7
after_ingest_rss=$(rss_kb "$pid" VmRSS) after_ingest_anon=$(rss_kb "$pid" RssAnon) hwm=$(rss_kb "$pid" VmHWM)
customers_seen=$(curl -s "http://$HTTP/metrics" | awk '/^rapport_customers\{/ {s += $2} END {printf "%d", s}')
stop_daemon
mem_stop_s=$STOP_S
KEEP_STATE=1 start_daemon
sleep 2
restart_rss=$(rss_kb "$pid" VmRSS) restart_anon=$(rss_kb "$pid" RssAnon)
measure "memory_query" 1 --mode query -c 16 -n 200000 --customers "$MEM_CUSTOMERS" --zipf 0 --seed 8 \
  --duration "$DURATION"
query_rss=$(rss_kb "$pid" VmRSS) query_anon=$(rss_kb "$pid" RssAnon)
disk_kb=$(du -sk "$WORK/state" | cut -f1)
stop_daemon
printf '{"kind":"memory","customers":%s,"customers_metric":%s,"after_ingest_rss_kb":%s,"after_ingest_anon_kb":%s,"ingest_hwm_kb":%s,"stop_s":%s,"restart_rss_kb":%s,"restart_anon_kb":%s,"after_queries_rss_kb":%s,"after_queries_anon_kb":%s,"state_dir_kb":%s}\n' \
  "$MEM_CUSTOMERS" "${customers_seen:-0}" "$after_ingest_rss" "$after_ingest_anon" "$hwm" "$mem_stop_s" "$restart_rss" \
  "$restart_anon" "$query_rss" "$query_anon" "$disk_kb" >>"$JSONL"

fi  # want

# ---------------------------------------------------------------- baselines
if want baselines; then
if [ "$BASELINES" = 1 ]; then
  log "converting the events for the baselines"
  note_cmd "python3 bench/convert_events.py events.ndjson CONVERTED --pg-batch $PG_BATCH --redis-parts $HEADLINE_CONNS"
  python3 bench/convert_events.py "$EVENTS_FILE" "$WORK/conv" --pg-batch "$PG_BATCH" --redis-parts "$HEADLINE_CONNS" >/dev/null
  log "PostgreSQL, aggregate only (pre-parsed CSV, no dedup)"
  note_cmd "bench/pg_baseline.sh CONVERTED --clients 2 --repeats $REPEATS"
  bench/pg_baseline.sh "$WORK/conv" --clients 2 --repeats "$REPEATS" --out "$WORK/pg.jsonl" >/dev/null ||
    log "PostgreSQL baseline failed"
  log "PostgreSQL, the whole job with dedup (raw NDJSON, parsed in SQL, 10 k per transaction, one connection)"
  note_cmd "bench/pg_dedup_baseline.sh events.ndjson CONVERTED/expected.json --batch 10000 --repeats $REPEATS"
  bench/pg_dedup_baseline.sh "$EVENTS_FILE" "$WORK/conv/expected.json" --batch 10000 --repeats "$REPEATS" \
    --out "$WORK/pg_dedup.jsonl" >/dev/null || log "PostgreSQL (dedup) baseline failed"
  for fs in always everysec; do
    log "Redis appendfsync $fs"
    note_cmd "bench/redis_baseline.sh CONVERTED --fsync $fs --repeats $REPEATS"
    bench/redis_baseline.sh "$WORK/conv" --fsync "$fs" --repeats "$REPEATS" --out "$WORK/redis_$fs.jsonl" >/dev/null ||
      log "Redis ($fs) baseline failed"
  done
  cat "$WORK"/pg.jsonl "$WORK"/pg_dedup.jsonl "$WORK"/redis_*.jsonl 2>/dev/null | sed 's/^{/{"kind":"baseline",/' >>"$JSONL" || true
  rm -rf "$WORK/conv"
fi

fi  # want

# ---------------------------------------------------------------- profiles
if want profiles; then
if [ "$PROFILE" = 1 ] && command -v perf >/dev/null; then
  threads_sample() { for t in /proc/"$pid"/task/*; do echo "$(basename "$t") $(cat "$t/schedstat" 2>/dev/null)"; done; }
  profile() {  # NAME SECONDS loadgen-args...
    local name=$1 secs=$2; shift 2
    log "profile: $name"
    start_daemon
    if [ "$name" = query ]; then
      "$LOADGEN" --tcp "$TCP" --http "$HTTP" --mode tcp -c 4 --file "$EVENTS_FILE" -n "$EVENTS" -q >/dev/null 2>&1 || true
    fi
    "$LOADGEN" --tcp "$TCP" --http "$HTTP" -q --no-verify "$@" --duration $((2 * secs + 10)) >"$WORK/profile_load.txt" 2>&1 &
    local lg=$!
    sleep 6  # the loadgen reads the events first
    {
      echo "## $name: rapport-loadgen $*"
      threads_sample >"$WORK/sched0"
      perf stat -e task-clock,context-switches,cpu-migrations,page-faults -p "$pid" -- sleep "$secs" 2>&1 | sed '/^$/d'
      threads_sample >"$WORK/sched1"
      echo "### per thread over the same ${secs} s (/proc/PID/task/TID/schedstat): on CPU, runnable but waiting for a CPU, context switches"
      join <(sort "$WORK/sched0") <(sort "$WORK/sched1") | sort -k1,1n |
        awk -v s="$secs" '{run = ($5 - $2) / s / 1e7; wait = ($6 - $3) / s / 1e7;
          if (run + wait >= 1) printf "thread %-8s on CPU %5.1f %%   waiting for a CPU %5.1f %%   switches %d\n", $1, run, wait, $7 - $4}'
    } >"$RES/profile_$name.txt"
    perf record -F 499 -o "$WORK/perf.data" -p "$pid" -- sleep "$secs" >/dev/null 2>&1 || true
    wait "$lg" || true
    echo "loadgen: $(cat "$WORK/profile_load.txt")" >>"$RES/profile_$name.txt"
    {
      echo "### perf report (self time, top symbols)"
      perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
        grep -v '^#' | sed -E '/^$/d; s/[[:space:]]+$//; s/^(.{150}).*/\1…/' | head -30 || true
    } >>"$RES/profile_$name.txt"
    stop_daemon
    rm -f "$WORK/perf.data"
  }
  profile tcp 8 --mode tcp -c "$HEADLINE_CONNS" --file "$EVENTS_FILE" -n "$EVENTS"
  profile http_single 8 --mode http-single -c 64 --file "$EVENTS_FILE" -n "$EVENTS"
  profile query 8 --mode query -c 16 --file "$EVENTS_FILE" -n "$EVENTS"
fi

fi  # want

# ---------------------------------------------------------------- report
T_END=$(date +%s)
python3 - "$MACHINE_JSON" "$((T_END - T_START))" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
m["loadavg_end"] = open('/proc/loadavg').read().split()[:3]
m["wall_s"] = int(sys.argv[2])
json.dump(m, open(sys.argv[1], "w"), indent=1)
EOF
rm -rf "$WORK/state"
python3 bench/report.py
log "done in $((T_END - T_START)) s: bench/RESULTS.md"
if [ "$LONG" = 1 ] && want soak; then
  log "--long: the 30-minute soak at half the peak (bench/soak.sh --minutes 30)"
  bench/soak.sh --minutes 30 --tag 30min --no-build || log "the soak failed"  # results/soak_summary_30min.md
  python3 bench/report.py
fi
