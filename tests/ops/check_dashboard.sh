#!/usr/bin/env bash
# Runs every PromQL query of the Grafana dashboard against a live Prometheus.
#
# Usage: tests/ops/check_dashboard.sh [--syntax-only] [--retry-for SECONDS] PROM_URL [DASHBOARD_JSON]
#   PROM_URL         e.g. http://127.0.0.1:9090 (a Prometheus scraping a running rapportd)
#   DASHBOARD_JSON   default: metrics/grafana/rapport.json of this repository
#   --syntax-only    only fail on query errors (bad PromQL), not on empty results; for use
#                    against a Prometheus without a rapport target
#   --retry-for N    re-run the whole check until it passes or N seconds have elapsed
#                    (rate() needs two scrapes inside the 1m window after start-up)
#
# Every panel target `expr` (rows included) and the `instance` template-variable query are
# sent to PROM_URL/api/v1/query after substituting Grafana variables:
#   $__rate_interval -> 1m, $__interval -> 15s, $__range -> 1h,
#   instance="$instance" / instance=~"$instance" -> instance=~".*", other $instance -> .*
# The check fails, listing the panel titles, if any query returns an error, or (unless
# --syntax-only) an empty result. Requires bash, curl and python3.
set -euo pipefail

usage() {
  sed -n '3,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

syntax_only=0
retry_for=0
positional=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --syntax-only) syntax_only=1 ;;
    --retry-for)
      [[ $# -ge 2 ]] || usage
      retry_for="$2"
      shift
      ;;
    -h | --help) usage ;;
    -*) echo "check_dashboard: unknown option $1" >&2; usage ;;
    *) positional+=("$1") ;;
  esac
  shift
done
[[ ${#positional[@]} -ge 1 && ${#positional[@]} -le 2 ]] || usage

prom_url="${positional[0]%/}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dashboard="${positional[1]:-$repo_root/metrics/grafana/rapport.json}"
[[ -r "$dashboard" ]] || { echo "check_dashboard: cannot read $dashboard" >&2; exit 2; }

# One line per query: <title> TAB <expr with variables substituted>.
extract_queries() {
  python3 - "$1" <<'PY'
import json, re, sys

with open(sys.argv[1]) as f:
    dash = json.load(f)

def subst(expr):
    e = expr.replace("\n", " ")
    e = re.sub(r'instance\s*=~?\s*"\$\{?instance\}?"', 'instance=~".*"', e)
    e = re.sub(r'\$\{instance(:[a-z]+)?\}|\$instance\b', '.*', e)
    e = re.sub(r'\$\{__rate_interval\}|\$__rate_interval\b', '1m', e)
    e = re.sub(r'\$\{__interval\}|\$__interval\b', '15s', e)
    e = re.sub(r'\$\{__range\}|\$__range\b', '1h', e)
    return e

def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))

rows = []
for p in walk(dash.get("panels", [])):
    for t in p.get("targets", []):
        expr = t.get("expr", "").strip()
        if expr and not t.get("hide", False):
            rows.append((f'{p.get("title", "?")} [{t.get("refId", "?")}]', subst(expr)))
for v in dash.get("templating", {}).get("list", []):
    if v.get("type") != "query":
        continue
    q = v.get("query")
    q = q.get("query", "") if isinstance(q, dict) else (q or "")
    m = re.fullmatch(r'\s*label_values\((.+),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*', q)
    if m:  # label_values(<selector>, label) is Grafana-only: check that the selector has data
        rows.append((f'variable ${v["name"]}', subst(m.group(1))))
if not rows:
    sys.exit("check_dashboard: no queries found in the dashboard")
for title, expr in rows:
    print(f"{title.replace(chr(9), ' ')}\t{expr}")
PY
}

# Reads a /api/v1/query response on stdin; prints "ok N", "empty" or "error <message>".
classify_response() {
  python3 -c '
import json, sys
raw = sys.stdin.read()
try:
    r = json.loads(raw)
except ValueError:
    print("error non-JSON response: " + raw[:200].replace("\n", " "))
    sys.exit()
if r.get("status") != "success":
    print("error " + str(r.get("errorType", "")) + ": " + str(r.get("error", raw[:200])))
    sys.exit()
data = r.get("data", {})
res = data.get("result")
if data.get("resultType") in ("scalar", "string"):
    print("ok 1")
elif res:
    print("ok %d" % len(res))
else:
    print("empty")
'
}

run_check() {
  local queries title expr body resp verdict
  local -a failed=()
  local total=0
  queries="$(extract_queries "$dashboard")"
  while IFS=$'\t' read -r title expr; do
    total=$((total + 1))
    if [[ "$expr" == *'$'* ]]; then
      failed+=("$title: unsubstituted Grafana variable in: $expr")
      continue
    fi
    if ! resp="$(curl -sS --max-time 10 -G --data-urlencode "query=$expr" "$prom_url/api/v1/query" 2>&1)"; then
      failed+=("$title: curl failed: $resp")
      continue
    fi
    body="$resp"
    verdict="$(printf '%s' "$body" | classify_response)"
    case "$verdict" in
      ok*) ;;
      empty)
        if [[ $syntax_only -eq 0 ]]; then
          failed+=("$title: empty result for: $expr")
        fi
        ;;
      *) failed+=("$title: ${verdict#error } -- query: $expr") ;;
    esac
  done <<<"$queries"

  if [[ ${#failed[@]} -gt 0 ]]; then
    echo "check_dashboard: ${#failed[@]} of $total queries failed against $prom_url:" >&2
    printf '  - %s\n' "${failed[@]}" >&2
    return 1
  fi
  local mode="non-empty"
  [[ $syntax_only -eq 1 ]] && mode="valid (syntax only)"
  echo "check_dashboard: all $total queries $mode against $prom_url"
}

deadline=$((SECONDS + retry_for))
while true; do
  if run_check; then
    exit 0
  fi
  if ((SECONDS >= deadline)); then
    exit 1
  fi
  echo "check_dashboard: retrying in 5s" >&2
  sleep 5
done
