#!/usr/bin/env bash
# Clones the current commit into an empty temporary directory (no sibling folders, nothing from
# this checkout's build or untracked files) and runs the README's test command there, so a
# missing file, a path outside the repository or an undeclared package shows up as a new user
# would meet it. Not part of `make test` (it *is* a `make test`).
#
#   tests/fresh_clone.sh            # make test in the clone
#   tests/fresh_clone.sh test-fast  # another make target, e.g. the normal build only
#
# Uncommitted changes are not in the clone: commit first. The clone is removed afterwards
# unless KEEP=1.
set -euo pipefail
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
target=${1:-test}
commit=$(git -C "$repo" rev-parse HEAD)
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  echo "fresh_clone: note: uncommitted changes are not tested (only $commit is)" >&2
fi
outer=$(mktemp -d /tmp/rapport-fresh.XXXXXX)
cleanup() { [ "${KEEP:-0}" = 1 ] && echo "fresh_clone: kept $outer" || rm -rf "$outer"; }
trap cleanup EXIT
# The clone sits alone in its own empty directory: no sibling folders beside it.
git clone --quiet --no-local "$repo" "$outer/rapport"
git -C "$outer/rapport" checkout --quiet "$commit"
echo "fresh_clone: $commit in $outer/rapport (siblings: $(ls -A "$outer" | tr '\n' ' '))"
cd "$outer/rapport"
make "$target"
echo "fresh_clone: make $target passed on a fresh clone of $commit"
