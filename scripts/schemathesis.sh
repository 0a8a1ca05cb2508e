#!/usr/bin/env bash
# Fuzzes the API against its own OpenAPI document with schemathesis (`make fuzz-api`): builds
# and starts the real API on real PostgreSQL and RabbitMQ (its own database, recreated each run;
# migrations run at start), creates a tenant, and runs schemathesis twice, with an admin token
# and with that tenant's token. Checks: no 5xx, every status documented, documented content
# type, responses (bodies and headers) match their schemas. Bounded: FUZZ_MAX_TIME seconds per
# run (default 60). Exits non-zero on any failure. Nothing is excluded: every operation is
# fuzzed. FUZZ_CHECKS overrides the list of checks, to explore (e.g. negative_data_rejection,
# which flags the batch route's by-design 202 with per-item errors).
set -euo pipefail
cd "$(dirname "$0")/.."

port="${FUZZ_PORT:-18080}"
db_name="${FUZZ_DATABASE:-msgsvc_schemathesis}"
max_time="${FUZZ_MAX_TIME:-60}"
checks="${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance}"
base="http://127.0.0.1:$port"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db_name"
export SERVER_HOST=127.0.0.1 SERVER_PORT="$port"
export JWT_SECRET="schemathesis-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export LOG_LEVEL="${LOG_LEVEL:-warn}" LOG_FORMAT=json

scripts/services.sh
st="$(scripts/pytool.sh schemathesis 3.11 'schemathesis==4.32.*')"
cargo build -q --workspace --bins  # the same build as make run and the system tests

work="$(mktemp -d)"
# The broker queues of this database's tenants are ours: delete them before and after.
clean_queues() { TEST_DATABASE_URL="$DATABASE_URL" python3 scripts/clean-test-queues.py >/dev/null 2>&1 || true; }
clean_queues
psql -q postgres://postgres@127.0.0.1:5432/postgres -c "DROP DATABASE IF EXISTS \"$db_name\" WITH (FORCE)"

target/debug/api >"$work/api.log" 2>&1 &
api_pid=$!
stop() {
  kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null || true
  clean_queues
  [ "$status" = 0 ] && rm -rf "$work" || echo "schemathesis: API log kept in $work/api.log" >&2
}
status=1 # until the runs below say otherwise
trap stop EXIT

for _ in $(seq 1 120); do
  curl -fsS "$base/health" >/dev/null 2>&1 && break
  kill -0 "$api_pid" 2>/dev/null || { cat "$work/api.log" >&2; echo "error: the API exited" >&2; exit 1; }
  sleep 0.5
done
curl -fsS "$base/health" >/dev/null

admin="$(target/debug/api token --admin)"
call() { curl -fsS -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' "$@"; }
id_of() { python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'; }
tenant_id="$(call -X POST "$base/api/v1/tenants" -d '{"name": "schemathesis"}' | id_of)"
# A second tenant for DELETE, so the first one stays active for every other operation.
doomed_id="$(call -X POST "$base/api/v1/tenants" -d '{"name": "schemathesis-deleted"}' | id_of)"
message_ids=""
for i in 1 2 3; do
  id="$(call -X POST "$base/api/v1/tenants/$tenant_id/messages" \
    -d "{\"queue_name\": \"fuzz\", \"message_body\": {\"n\": $i}}" | id_of)"
  message_ids="$message_ids\"$id\", "
done
tenant="$(target/debug/api token --tenant "$tenant_id")"

# Most generated ids are real ones, so the handlers behind the tenant and message lookups get
# fuzzed too; the rest are random UUIDs (404) or, in negative cases, malformed ids (400).
cat >"$work/schemathesis.toml" <<EOF
[dictionaries.tenants]
values = ["$tenant_id"]

[dictionaries.doomed]
values = ["$doomed_id"]

[dictionaries.messages]
values = [$message_ids]

[parameters]
"path.tenant_id" = { dictionary = "tenants", probability = 0.8 }
"path.message_id" = { dictionary = "messages", probability = 0.8 }

[[operations]]
include-method = "DELETE"
include-path = "/api/v1/tenants/{tenant_id}"
parameters = { "path.tenant_id" = { dictionary = "doomed", probability = 0.8 } }

EOF

status=0
for who in admin tenant; do
  token="$admin"
  [ "$who" = tenant ] && token="$tenant"
  echo "== schemathesis with the $who token (up to ${max_time}s)"
  "$st/schemathesis" --no-color --config-file "$work/schemathesis.toml" run "$base/api/v1/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $token" \
    --checks "$checks" \
    --phases examples,coverage,fuzzing \
    --max-time "$max_time" \
    --workers 1 \
    --request-timeout 10 \
    --suppress-health-check too_slow \
    || status=1
done

if [ "$status" != 0 ] && [ -s "$work/api.log" ]; then
  echo "== API errors" >&2
  grep -a '"level":"ERROR"' "$work/api.log" | grep -av 'response failed' | cut -c1-1500 | head -n 20 >&2 || true
fi
exit "$status"
