#!/usr/bin/env bash
# Runs the whole system locally with working defaults: PostgreSQL and RabbitMQ (started if
# needed), migrations, the API on :8080 (with the outbox relay) and the consumer's local event
# source. Ctrl-C stops everything gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
cargo build --workspace --bins
${CARGO_TARGET_DIR:-target}/debug/api migrate

# Local development delivers webhooks to loopback endpoints too.
export WEBHOOK_ALLOW_PRIVATE="${WEBHOOK_ALLOW_PRIVATE:-true}"
export WEBHOOK_ALLOW_HTTP="${WEBHOOK_ALLOW_HTTP:-true}"

pids=()
stop() {
  trap - INT TERM EXIT
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

${CARGO_TARGET_DIR:-target}/debug/consumer &
pids+=($!)
${CARGO_TARGET_DIR:-target}/debug/api &
pids+=($!)

port="${SERVER_PORT:-8080}"
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
cat <<MSG

  API        http://127.0.0.1:$port/api/v1   (health: /health, metrics: /metrics)
  Consumers  local event source, consuming every active tenant queue
  Admin token:  export TOKEN=\$(make -s token)
  Stop with Ctrl-C.

MSG
wait -n "${pids[@]}"
