#!/usr/bin/env bash
# Ingest rate with 10 alerts configured and a live webhook receiver vs. with no alert (issue 14:
# must be >= 0.9x). Alternates the two configurations, each run on a fresh state dir, closed-loop TCP
# ingest of generated events (every event type, Zipf customers) with rapport-loadgen; reports each run,
# the medians and their ratio into bench/results/alerts_bench.md.
#
#   bench/alerts_bench.sh [--build build/perf] [--events 1000000] [--reps 3] [--connections 4]
#                         [--durability fsync|async]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build/perf EVENTS=1000000 REPS=3 CONNS=4 DURABILITY=fsync
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --events) EVENTS=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    --durability) DURABILITY=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
RAPPORTD=$BUILD/daemon/rapportd LOADGEN=$BUILD/bench/rapport-loadgen
WORK=$(mktemp -d /tmp/rapport-alerts-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# The live receiver: answers 204 to every POST and counts them.
cat >"$WORK/receiver.py" <<'PY'
import http.server, sys, threading
count = 0
lock = threading.Lock()
class R(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            count += 1
        self.send_response(204); self.end_headers()
    def do_GET(self):
        body = str(count).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), R)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
python3 "$WORK/receiver.py" >"$WORK/receiver.port" &
pids+=($!)
for _ in $(seq 50); do [ -s "$WORK/receiver.port" ] && break; sleep 0.1; done
URL="http://127.0.0.1:$(cat "$WORK/receiver.port")/hook"

alert() {  # name conditions...
  printf '[[alerts]]\nname = "%s"\nurl = "%s"\nsecret = "bench-secret"\n' "$1" "$URL"
  shift
  printf '%s\n' "$@"
  echo
}
{
  echo "[storage]"; echo "durability = \"$DURABILITY\""; echo
  alert complaints 'event_types = ["complaint"]'
  alert public 'event_types = ["social", "review"]' 'channels = ["twitter", "facebook", "instagram"]'
  alert unhappy 'satisfaction_below = 40'
  alert very-unhappy-survey 'event_types = ["survey"]' 'satisfaction_below = 20'
  alert churning 'churn_risk_above = 0.7'
  alert vip-complaints 'event_types = ["complaint"]' 'tiers = ["platinum", "gold"]'
  alert refunds 'event_types = ["refund"]'
  alert cancellations 'event_types = ["cancellation"]'
  alert bad-reviews 'event_types = ["review"]' 'satisfaction_below = 30'
  alert tier-moves 'tier_changed = true'
} >"$WORK/alerts.toml"
printf '[storage]\ndurability = "%s"\n' "$DURABILITY" >"$WORK/none.toml"

run_one() {  # config label rep -> events/s on stdout
  local conf=$1 label=$2 rep=$3
  rm -rf "$WORK/state"; : >"$WORK/daemon.log"
  "$RAPPORTD" --config "$conf" --http 127.0.0.1:0 --tcp 127.0.0.1:0 --state-dir "$WORK/state" 2>"$WORK/daemon.log" &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 100); do grep -q "listening http=" "$WORK/daemon.log" && break; sleep 0.1; done
  local line http tcp
  line=$(grep -m1 "listening http=" "$WORK/daemon.log")
  http=$(sed -E 's/.*http=([^ ]+) .*/\1/' <<<"$line")
  tcp=$(sed -E 's/.*tcp=([^ ]+).*/\1/' <<<"$line")
  local json
  json=$("$LOADGEN" --mode tcp --tcp "$tcp" --http "$http" -c "$CONNS" -n "$EVENTS" --customers 100000 --seed "$rep" \
    --json --quiet --label "$label")
  local delivered
  delivered=$(curl -s "http://$http/metrics" | awk '/^rapport_alert_deliveries_total\{.*outcome="delivered"/ {s += $2} END {print s + 0}')
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  local rate
  rate=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["events_per_s"]))' "$json")
  log "$label rep $rep: $rate events/s, $delivered alerts delivered during the run"
  echo "$rate $delivered"
}

none=() with=()
results=""
for rep in $(seq "$REPS"); do
  read -r r d < <(run_one "$WORK/none.toml" none "$rep"); none+=("$r"); results+="| $rep | none | $r | $d |"$'\n'
  read -r r d < <(run_one "$WORK/alerts.toml" alerts "$rep"); with+=("$r"); results+="| $rep | 10 alerts | $r | $d |"$'\n'
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
m_none=$(median "${none[@]}") m_with=$(median "${with[@]}")
ratio=$(python3 -c "print(f'{$m_with / $m_none:.3f}')")
mkdir -p bench/results
{
  echo "# Ingest with 10 alerts and a live receiver vs. none"
  echo
  echo "\`bench/alerts_bench.sh --build $BUILD --events $EVENTS --reps $REPS --connections $CONNS --durability $DURABILITY\`"
  echo "($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
  echo
  echo "| rep | config | events/s | alerts delivered during the run |"
  echo "|---|---|---|---|"
  printf '%s' "$results"
  echo
  echo "Median: none $m_none events/s, 10 alerts $m_with events/s: ratio **$ratio** (target >= 0.9)."
} | tee bench/results/alerts_bench.md
