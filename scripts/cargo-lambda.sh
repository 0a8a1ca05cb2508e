#!/usr/bin/env bash
# Runs `cargo lambda ...` with cargo-lambda (and the zig it cross-compiles with) installed from
# PyPI into its own virtualenv on first use. `--bin-dir` prints the directory holding it.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(scripts/pytool.sh cargo-lambda 3.11 'cargo-lambda>=1.8,<2')"
if [ "${1:-}" = "--bin-dir" ]; then
  echo "$bin"
  exit 0
fi
export PATH="$bin:$PATH"
exec cargo lambda "$@"
