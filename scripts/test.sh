#!/usr/bin/env bash
# Runs every test against the real PostgreSQL and RabbitMQ (started if needed). Tests create
# and migrate their own database (TEST_DATABASE_URL) and isolate themselves by tenant.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
# LocalStack for the provisioner tests (Lambda control plane, SQS).
scripts/localstack.sh
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/msgsvc_test}"
export RABBITMQ_URL="${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
python3 scripts/clean-test-queues.py || true
cargo test --workspace --no-fail-fast "$@"
