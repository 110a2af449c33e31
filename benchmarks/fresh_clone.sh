#!/usr/bin/env bash
# The README's quick-start wall times: a clean clone of HEAD in a new directory, no .venv, no pip cache,
# then `make demo`, then (its .venv removed) `make test`, as CI runs it. Prints both times.
#   bash benchmarks/fresh_clone.sh [WORKDIR]      (default: a new temp dir; several GB while it runs)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
git clone -q "$repo" "$work/dfa-bench"
cd "$work/dfa-bench"
export PIP_NO_CACHE_DIR=1
start=$(date +%s); make demo > "$work/demo.log" 2>&1; demo=$(( $(date +%s) - start ))
rm -rf .venv
start=$(date +%s); make test > "$work/test.log" 2>&1; test=$(( $(date +%s) - start ))
echo "commit $(git rev-parse --short HEAD): make demo ${demo}s, make test ${test}s (logs in $work)"
