#!/usr/bin/env bash
# The local Lambda loop (`make dev`): the api, consumer and provisioner functions run under
# `cargo lambda watch` as Lambda runs them (rebuilt when the code changes), LocalStack plays
# SQS, Secrets Manager and Lambda's control plane, and two local processes play the AWS
# triggers: the consumer's event source (Amazon MQ: RabbitMQ -> Invoke API) and the
# provisioner's trigger (the SQS event source mapping on the control queue, and the relay
# schedule). A message goes API function -> RabbitMQ -> consumer function, and control jobs
# go API function -> SQS -> provisioner function -> LocalStack Lambda, as in AWS.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${LAMBDA_PORT:-9000}"
invoke="http://127.0.0.1:$port"

scripts/services.sh
scripts/localstack.sh
cargo build --workspace --bins
${CARGO_TARGET_DIR:-target}/debug/api migrate

# What the functions and the trigger processes read (cargo lambda watch passes its environment
# on to the functions).
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export CONTROL_PLANE=aws
export CONTROL_QUEUE_URL="${CONTROL_QUEUE_URL:-$AWS_ENDPOINT_URL/000000000000/msgsvc-control}"
export TENANT_FUNCTION_TEMPLATE="${TENANT_FUNCTION_TEMPLATE:-consumer}"
export WEBHOOK_ALLOW_PRIVATE="${WEBHOOK_ALLOW_PRIVATE:-true}"
export WEBHOOK_ALLOW_HTTP="${WEBHOOK_ALLOW_HTTP:-true}"
# Inside Lambda (as under cargo lambda watch) the public development JWT secret is refused.
export JWT_SECRET="${JWT_SECRET:-dev-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
export PATH="$(scripts/cargo-lambda.sh --bin-dir):$PATH"

pids=()
stop() {
  trap - INT TERM EXIT
  # cargo lambda watch runs each function as a child process of its own.
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

# Each function's instances run one invocation at a time, as in Lambda; --concurrency lets
# several tenants' batches run at once (each tenant is capped at its capacity by the event
# source).
setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$port" \
  --concurrency "${LAMBDA_CONCURRENCY:-4}" &
pids+=($!)
echo "waiting for cargo lambda watch and the API function (the first call builds it)"
for _ in $(seq 1 600); do
  curl -fsS "$invoke/health" >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS "$invoke/health" >/dev/null || { echo "the API function did not answer" >&2; exit 1; }

CONSUMER_INVOKE_ENDPOINT="$invoke" CONSUMER_FUNCTION_NAME=consumer setsid ${CARGO_TARGET_DIR:-target}/debug/consumer &
pids+=($!)
setsid ${CARGO_TARGET_DIR:-target}/debug/provisioner trigger --invoke "$invoke" --function provisioner &
pids+=($!)

cat <<MSG

  API function   $invoke/api/v1   (health: /health; Invoke API: $invoke/2015-03-31/functions/<name>/invocations)
  Consumers      event source -> consumer function (Invoke API), each tenant capped at its capacity
  Control jobs   $CONTROL_QUEUE_URL -> provisioner function -> LocalStack Lambda ($AWS_ENDPOINT_URL)
  Admin token:   export TOKEN=\$(JWT_SECRET=$JWT_SECRET make -s token)
  Stop with Ctrl-C.

MSG
wait -n "${pids[@]}"
