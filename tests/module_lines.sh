#!/usr/bin/env bash
# Module lines: which folder may include (and link) which. Fails, naming the file and line, when a source file
# includes a folder its module may not depend on, or a CMakeLists links a library across the line. In particular it
# keeps the metrics <-> ingest cycle from coming back: ingest/net declares the FrontStats it needs and the daemon
# implements it; metrics/ is Prometheus plumbing that knows nothing of ingest/.
#
# Usage: tests/module_lines.sh [SOURCE_DIR]   (default: the repository holding this script)
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
cd "$root"

# module -> the folders its sources may include (besides itself).
declare -A allowed=(
  [common]=""
  [scoring]="common"
  [storage]="common scoring"
  [ingest]="common scoring"
  [metrics]="common"
)
# module -> libraries its CMakeLists must not link.
declare -A forbidden_links=(
  [ingest]="rapport_metrics rapport_daemon_lib rapport_storage"
  [metrics]="rapport_ingest rapport_ingest_net rapport_daemon_lib rapport_storage rapport_scoring"
  [scoring]="rapport_ingest rapport_ingest_net rapport_metrics rapport_storage rapport_daemon_lib"
  [storage]="rapport_ingest_net rapport_metrics rapport_daemon_lib"
)

failures=0
for module in "${!allowed[@]}"; do
  [[ -d "$module" ]] || { echo "module_lines: missing folder $module/" >&2; failures=$((failures + 1)); continue; }
  ok=" $module ${allowed[$module]} "
  while IFS= read -r hit; do
    file="${hit%%:*}"
    rest="${hit#*:}"
    line="${rest%%:*}"
    included="$(sed -E 's/.*#include "([^"]*)".*/\1/' <<<"${rest#*:}")"
    folder="${included%%/*}"
    [[ "$included" == */* ]] || continue  # a header beside the file
    if [[ "$ok" != *" $folder "* ]]; then
      echo "$file:$line: $module/ may not include $included (allowed: $module ${allowed[$module]})"
      failures=$((failures + 1))
    fi
  done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$module" --include='*.h' --include='*.cc' || true)
done

for module in "${!forbidden_links[@]}"; do
  cmake_file="$module/CMakeLists.txt"
  [[ -f "$cmake_file" ]] || continue
  for lib in ${forbidden_links[$module]}; do
    # Only target_link_libraries calls count (comments may name anything).
    if sed 's/#.*//' "$cmake_file" | tr '\n' ' ' | grep -oE 'target_link_libraries\([^)]*\)' | grep -qwE "$lib"; then
      echo "$cmake_file: $module/ may not link $lib"
      failures=$((failures + 1))
    fi
  done
done

if ((failures > 0)); then
  echo "module_lines: $failures violation(s); see docs/design.md (Module lines)" >&2
  exit 1
fi
echo "module_lines: ok"
