#!/usr/bin/env bash
# Validates the Prometheus alerting rules and runs their unit tests:
#   promtool check rules metrics/alerts.yml
#   promtool test rules  metrics/alerts_test.yml
# Usage: tests/ops/check_rules.sh   (from any directory; PROMTOOL overrides the binary)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
promtool="${PROMTOOL:-promtool}"

if ! command -v "$promtool" >/dev/null 2>&1; then
  echo "check_rules: promtool not found (apt-get install prometheus, or set PROMTOOL)" >&2
  exit 2
fi

cd "$repo_root"
"$promtool" check rules metrics/alerts.yml
"$promtool" test rules metrics/alerts_test.yml
echo "check_rules: OK"
