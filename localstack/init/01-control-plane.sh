#!/usr/bin/env bash
# Creates what the local control plane needs in LocalStack: the control queue with its DLQ
# (redrive after 3 receives), the broker secret, and the template consumer function that tenant
# functions are cloned from (a placeholder zip: LocalStack cannot run functions without Docker;
# cargo lambda watch runs the real ones). Idempotent. Works on the host (scripts/localstack.sh)
# and mounted into the container's /etc/localstack/init/ready.d/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -x /opt/code/localstack/.venv/bin/python ]; then
  py=/opt/code/localstack/.venv/bin/python   # inside the LocalStack container
else
  py="$("$here/../../scripts/pytool.sh" localstack-py313 3.13 'localstack-core[runtime]==2026.3.0' \
    'cbor2<6' 'pyopenssl==25.1.0' 'cryptography>=45,<46' service_identity)/python"
fi
exec "$py" "$here/control_plane.py"
