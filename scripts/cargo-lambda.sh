#!/usr/bin/env bash
# Runs `cargo lambda ...` with cargo-lambda (and the zig it cross-compiles with) installed from
# PyPI into its own virtualenv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(scripts/pytool.sh cargo-lambda 3.11 'cargo-lambda>=1.8,<2')"
export PATH="$bin:$PATH"
exec cargo lambda "$@"
