#!/usr/bin/env bash
# Checks monitoring/ against the running system: starts the API and consumer with traffic,
# starts Prometheus (Debian's package) with monitoring/'s scrape config and alert rules, and
# checks that both targets are up, the rules load, and the dashboard's queries return data.
# RENDER=1 also renders the dashboard with that data to docs/dashboard.png.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/services.sh
if ! command -v prometheus >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  else
    echo "prometheus is not installed (apt-get install prometheus)" >&2; exit 1
  fi
fi
cargo build --quiet --workspace --bins

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api_port=$(free_port); consumer_port=$(free_port); prom_port=$(free_port)
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

export DATABASE_URL="${MONITORING_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/msgsvc_monitoring}"
export SERVER_HOST=127.0.0.1 LOG_LEVEL=warn WEBHOOK_ALLOW_PRIVATE=true WEBHOOK_ALLOW_HTTP=true
${CARGO_TARGET_DIR:-target}/debug/api migrate
SERVER_PORT=$api_port ${CARGO_TARGET_DIR:-target}/debug/api & pids+=($!)
CONSUMER_METRICS_PORT=$consumer_port ${CARGO_TARGET_DIR:-target}/debug/consumer & pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$api_port/health" >/dev/null && break; sleep 0.2; done

# Traffic: a tenant, a burst of messages, a queue whose endpoint fails (dead letters), and
# replays of those.
token=$(${CARGO_TARGET_DIR:-target}/debug/api token --admin)
api="http://127.0.0.1:$api_port/api/v1"
tenant=$(curl -sf -X POST "$api/tenants" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d "{\"name\": \"monitoring-$(date +%s%N)\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -sf -X PUT "$api/tenants/$tenant/consumers/failing/config" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"workers": 1, "retry_attempts": 1, "retry_delay_ms": 100, "endpoint_url": "http://127.0.0.1:1/nothing"}' >/dev/null
traffic() {
  for round in $(seq 1 "$1"); do
    body=$(python3 -c "import json; print(json.dumps({'messages': [{'queue_name': 'orders', 'message_body': {'n': i}} for i in range(50)]}))")
    curl -sf -X POST "$api/tenants/$tenant/messages/batch" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$body" >/dev/null
    curl -sf -X POST "$api/tenants/$tenant/messages" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
      -d '{"queue_name": "failing", "message_body": "x"}' >/dev/null
    # Dead letters of the earlier rounds delivered again (the replay panel).
    curl -sf -X POST "$api/tenants/$tenant/messages/replay" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
      -d '{"queue_name": "failing", "from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z", "limit": 10}' >/dev/null
    sleep 1
  done
}
traffic "${TRAFFIC_ROUNDS:-5}" &
traffic_pid=$!
pids+=($traffic_pid)

sed -e "s/127.0.0.1:8080/127.0.0.1:$api_port/; s/127.0.0.1:8081/127.0.0.1:$consumer_port/" \
  monitoring/prometheus/prometheus.local.yml > "$work/prometheus.yml"
cp -r monitoring/prometheus/rules "$work/rules"
promtool check config "$work/prometheus.yml" >/dev/null
(cd "$work" && exec prometheus --config.file=prometheus.yml --storage.tsdb.path=data \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn) & pids+=($!)

python3 - "$prom_port" "$root/monitoring/grafana/dashboards/msgsvc-overview.json" <<'PY'
import json, sys, time, urllib.parse, urllib.request
port, dashboard = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}/api/v1"
def get(path, **params):
    url = f"{base}/{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)["data"]
deadline = time.time() + 90
while True:
    try:
        targets = get("targets")["activeTargets"]
        if len(targets) == 2 and all(t["health"] == "up" for t in targets):
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit(f"targets not up: {targets if 'targets' in dir() else 'prometheus unreachable'}")
    time.sleep(1)
print("targets up:", ", ".join(t["labels"]["job"] for t in targets))
groups = get("rules")["groups"]
print("alert rules loaded:", sum(len(g["rules"]) for g in groups))
assert sum(len(g["rules"]) for g in groups) >= 5, groups
time.sleep(20)  # enough samples for rate() windows
panels = json.load(open(dashboard))["panels"]
with_data, empty = [], []
for p in panels:
    for t in p.get("targets", []):
        expr = t["expr"].replace("$tenant_id", ".*").replace("$queue", ".*").replace("$__rate_interval", "1m")
        result = get("query", query=expr)["result"]
        (with_data if result else empty).append(p["title"])
print(f"dashboard queries with data: {len(with_data)}, empty: {len(empty)} {sorted(set(empty))}")
required = {"Processing rate by outcome", "Broker connected"}
missing = [r for r in required if not any(r.lower() in w.lower() for w in with_data)]
assert not missing, f"no data for {missing}"
assert len(with_data) >= len(panels) // 2, "most dashboard queries should return data"
PY

if [ "${RENDER:-0}" = 1 ]; then
  wait "$traffic_pid" 2>/dev/null || true  # let the traffic run its course for a fuller picture
  python3 scripts/render-dashboard.py "$prom_port" monitoring/grafana/dashboards/msgsvc-overview.json docs/dashboard.png
fi
echo "monitoring check passed"
