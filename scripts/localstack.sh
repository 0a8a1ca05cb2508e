#!/usr/bin/env bash
# Starts LocalStack on 127.0.0.1:4566 if nothing answers there: docker compose where Docker
# runs, otherwise the host recipe (localstack-core on Python 3.12 in a pytool venv). Then runs
# the localstack/ init scripts (queues, secrets, the template function), which are idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
endpoint="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"
ready() { curl -fsS "$endpoint/_localstack/health" >/dev/null 2>&1; }

if ! ready; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    docker compose up -d localstack
  else
    bin=$(scripts/pytool.sh localstack-py313 3.13 'localstack-core[runtime]==2026.3.0' 'cbor2<6' \
      'pyopenssl==25.1.0' 'cryptography>=45,<46' service_identity)
    root="${MSGSVC_LOCALSTACK_DIR:-$HOME/.cache/msgsvc/localstack}"
    mkdir -p "$root/fs" "$root/tmp" "$root/config"
    GATEWAY_LISTEN=127.0.0.1:4566 OVERRIDE_IN_DOCKER=0 DNS_ADDRESS=0 DISABLE_EVENTS=1 \
      SQS_ENDPOINT_STRATEGY=path LOCALSTACK_HOST=127.0.0.1:4566 \
      FILESYSTEM_ROOT="$root/fs" TMPDIR="$root/tmp" CONFIG_DIR="$root/config" \
      nohup "$bin/python" -m localstack.runtime.main >"$root/localstack.log" 2>&1 &
    echo "LocalStack starting on the host (log: $root/localstack.log)"
  fi
  for _ in $(seq 1 120); do ready && break; sleep 0.5; done
  ready || { echo "LocalStack did not start" >&2; exit 1; }
fi

for script in localstack/init/*.sh; do
  AWS_ENDPOINT_URL="$endpoint" bash "$script"
done
