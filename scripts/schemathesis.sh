#!/usr/bin/env bash
# Fuzzes the API against its own OpenAPI document with schemathesis (`make fuzz-api`): builds
# and starts the real API on real PostgreSQL and RabbitMQ (its own database, recreated each run;
# migrations run at start), creates a tenant, and runs schemathesis twice, with an admin token
# and with that tenant's token. Every schemathesis check runs (`--checks all`: no 5xx, every
# status documented, documented content types, responses and headers match their schemas,
# schema-valid requests accepted, schema-violating ones refused, auth enforced, missing
# headers and unsupported methods refused, resources available after creation and gone after
# deletion), in every phase including the stateful one. The exceptions, each by design, are
# listed in the configuration below with their routes and reasons. Bounded: FUZZ_MAX_TIME
# seconds per run (default 60). Exits non-zero on any failure. FUZZ_CHECKS overrides the list
# of checks, to explore.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${FUZZ_PORT:-18080}"
db_name="${FUZZ_DATABASE:-msgsvc_schemathesis}"
max_time="${FUZZ_MAX_TIME:-60}"
# Every check by default (the configuration below turns off the listed exceptions; a
# `--checks` on the command line would override it).
checks_option=()
[ -n "${FUZZ_CHECKS:-}" ] && checks_option=(--checks "$FUZZ_CHECKS")
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

${CARGO_TARGET_DIR:-target}/debug/api >"$work/api.log" 2>&1 &
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

admin="$(${CARGO_TARGET_DIR:-target}/debug/api token --admin)"
call() { curl -fsS -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' "$@"; }
id_of() { python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'; }
# Each run gets tenants of its own: the admin run's stateful phase deactivates tenants it finds
# (through the links of GET /tenants), which must not leave the tenant run a deactivated one.
setup() { # <run name>: sets tenant_id and writes $work/$1.toml
tenant_id="$(call -X POST "$base/api/v1/tenants" -d "{\"name\": \"schemathesis-$1\"}" | id_of)"
# A second tenant for DELETE, so the first one stays active for every other operation.
doomed_id="$(call -X POST "$base/api/v1/tenants" -d "{\"name\": \"schemathesis-$1-deleted\"}" | id_of)"
message_ids=""
for i in 1 2 3; do
  id="$(call -X POST "$base/api/v1/tenants/$tenant_id/messages" \
    -d "{\"queue_name\": \"fuzz\", \"message_body\": {\"n\": $i}}" | id_of)"
  message_ids="$message_ids\"$id\", "
done

# Most generated ids are real ones, so the handlers behind the tenant and message lookups get
# fuzzed too; the rest are random UUIDs (404) or, in negative cases, malformed ids (400).
cat >"$work/$1.toml" <<EOF
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

# Exception, by design: DELETE /api/v1/tenants/{tenant_id} deactivates the tenant and keeps
# its data; every read under the tenant keeps answering 200 (the tenant shows "inactive")
# and every change answers 409 tenant_inactive, as the DELETE operation's description says.
# So a read after the DELETE is not a use after free.
[[operations]]
include-method = "GET"
include-path-regex = '^/api/v1/tenants/\{tenant_id\}'
checks.use_after_free.enabled = false

# Exception, by design: a publish whose body is within the document's bounds is refused with
# 413 message_too_large when it exceeds the tenant's own max_message_bytes, which an admin sets
# (PUT .../limits) and the stateful phase does. Like 409 and 429, it is the tenant's state, not
# the request's form.
# 400 too, for rules between fields that the document does not state yet (a `not`/`oneOf` in
# the schema would): deliver_after and deliver_at not both, and at most MESSAGE_MAX_DELAY ahead
# (publish, batch); one replay selector, `from` before `to` (replay). Every other 400 of these
# routes is stated by the schema, and the stateful phase still checks that answers match it.
[[operations]]
include-method = "POST"
include-path-regex = '^/api/v1/tenants/\{tenant_id\}/messages'
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "413", "429", "5xx"]

# A tenant the run deactivated (its DELETE, or the stateful phase's) answers every change with
# 409 tenant_inactive: a state of the tenant, not a rule of the body's schema.
[[operations]]
include-method = "PUT"
include-path-regex = '^/api/v1/tenants/\{tenant_id\}/'
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409"]


EOF
}

status=0
for who in admin tenant; do
  setup "$who"
  token="$admin"
  [ "$who" = tenant ] && token="$(${CARGO_TARGET_DIR:-target}/debug/api token --tenant "$tenant_id")"
  echo "== schemathesis with the $who token (up to ${max_time}s)"
  "$st/schemathesis" --no-color --config-file "$work/$who.toml" run "$base/api/v1/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $token" \
    "${checks_option[@]}" \
    --phases examples,coverage,fuzzing,stateful \
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
