#!/usr/bin/env bash
# End-to-end check of the Grafana dashboard: a real rapportd under load, a real
# Prometheus (Debian's `prometheus`) scraping it every second on loopback, then
# every dashboard query evaluated through Prometheus' HTTP API (check_dashboard.sh):
# the test fails if any query errors or returns no data.
#
# Usage: tests/ops/dashboard_e2e.sh BUILD_DIR
set -euo pipefail

build="$(cd "$1" && pwd)"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mkdir -p "$build/test-tmp"
work="$(mktemp -d "$build/test-tmp/dashboard.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$build/daemon/rapportd" --http 127.0.0.1:0 --tcp 127.0.0.1:0 --state-dir "$work/state" 2>"$work/rapportd.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening http=" "$work/rapportd.log" && break; sleep 0.1; done
line="$(grep -m1 "listening http=" "$work/rapportd.log")" || { cat "$work/rapportd.log"; exit 1; }
http_port="$(sed -E 's/.*http=[^ ]*:([0-9]+) .*/\1/' <<<"$line")"
tcp_port="$(sed -E 's/.*tcp=[^ ]*:([0-9]+).*/\1/' <<<"$line")"
base="http://127.0.0.1:$http_port"

prom_port="$(free_port)"
cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $repo/metrics/alerts.yml
scrape_configs:
  - job_name: rapport
    static_configs:
      - targets: ["127.0.0.1:$http_port"]
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)

# Load: TCP streams of synthetic events, HTTP batches with a bad line, queries,
# an erasure, and a model fit so the business panels (tiers, fit age) have data.
"$build/daemon/rapportctl" generate --customers 400 --events 30000 --seed 3 >"$work/events.ndjson"
curl -sf -XPOST -H 'Content-Type: application/x-ndjson' --data-binary @"$work/events.ndjson" "$base/v1/events" >/dev/null
curl -sf -XPOST "$base/v1/model:fit" >/dev/null || { echo "model fit failed"; curl -s -XPOST "$base/v1/model:fit"; exit 1; }
load() {
  local i=0
  while true; do
    i=$((i + 1))
    "$build/daemon/rapportctl" generate --customers 2000 --events 2000 --seed "$((i + 10))" |
      nc -N 127.0.0.1 "$tcp_port" >/dev/null || true
    printf '{"event_id":"d%s","customer_id":"dash","ts":%s000,"type":"support","channel":"phone"}\nnot json\n' \
      "$i" "$(date +%s)" |
      curl -s -XPOST -H 'Content-Type: application/x-ndjson' --data-binary @- "$base/v1/events" >/dev/null || true
    curl -s "$base/v1/customers/dash" >/dev/null || true
    curl -s "$base/v1/customers/nobody" >/dev/null || true
    curl -s "$base/v1/tiers" >/dev/null || true
    sleep 0.2
  done
}
load &
pids+=($!)

# Wait for Prometheus to be up, then check every dashboard query (rate() needs a few scrapes).
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$prom_port/-/ready" >/dev/null && break; sleep 0.2; done
"$repo/tests/ops/check_dashboard.sh" --retry-for 90 "http://127.0.0.1:$prom_port" "$repo/metrics/grafana/rapport.json"
