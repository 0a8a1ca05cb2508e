#!/usr/bin/env bash
# Runs the AWS SAM CLI, installed from PyPI into its own virtualenv on first use. Validation
# works offline: without AWS credentials it gets a dummy region and keys.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(scripts/pytool.sh sam 3.11 'aws-sam-cli>=1.140,<2')"
export PATH="$bin:$PATH" SAM_CLI_TELEMETRY=0
if [ "${1:-}" = build ]; then
  # The rust-cargolambda build method calls `cargo lambda build` itself.
  lambda_bin="$(scripts/cargo-lambda.sh --bin-dir)"
  export PATH="$lambda_bin:$PATH"
fi
if [ "${1:-}" = validate ]; then
  export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-${AWS_REGION:-us-east-1}}"
  if [ -z "${AWS_ACCESS_KEY_ID:-}" ] && [ -z "${AWS_PROFILE:-}" ] && [ ! -f "$HOME/.aws/credentials" ]; then
    export AWS_ACCESS_KEY_ID=validate-only AWS_SECRET_ACCESS_KEY=validate-only
  fi
fi
exec sam "$@"
