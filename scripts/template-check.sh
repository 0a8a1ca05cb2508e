#!/usr/bin/env bash
# Offline checks of the deployment files: the SAM transform (`sam validate`), cfn-lint
# (`sam validate --lint`), checkov (the IaC security scanner) and docker-compose.yml (Compose
# schema, and every bind-mounted host path exists). No AWS account and no Docker engine needed.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== sam validate"
scripts/sam.sh validate --template template.yaml
echo "== sam validate --lint"
scripts/sam.sh validate --lint --template template.yaml
echo "== checkov"
# Its CloudFormation framework reads the SAM resources as written (AWS::Serverless::*, with
# Globals merged in), not the transform's output. Every finding is fixed or skipped in the
# resource's Metadata with the reason. --skip-download: nothing is fetched from Prisma Cloud.
checkov="$(scripts/pytool.sh checkov 3.12 'checkov==3.3.30')/checkov"
"$checkov" --file template.yaml --framework cloudformation --skip-download --compact --quiet \
  --output cli

echo "== docker-compose.yml"
if docker compose version >/dev/null 2>&1; then
  docker compose config --quiet
  resolved="$(docker compose config --format json)"
else
  # docker-compose 1.29 (Python) validates against the Compose schema without an engine.
  compose="$(scripts/pytool.sh compose 3.9 'docker-compose==1.29.2')/docker-compose"
  "$compose" config --quiet
  resolved="$("$compose" config)"
fi
python3 - "$resolved" <<'PY'
import json, os, sys
text = sys.argv[1]
try:
    doc = json.loads(text)
except ValueError:
    # YAML from docker-compose 1.x: pull "source:"/short-form volume host paths out of it.
    doc = None
paths = []
if doc is not None:
    for svc in doc.get("services", {}).values():
        for v in svc.get("volumes", []):
            if isinstance(v, dict) and v.get("type") == "bind":
                paths.append(v["source"])
else:
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("- /") and ":" in s:
            paths.append(s[2:].split(":", 1)[0])
        elif s.startswith("source: /"):
            paths.append(s.split(":", 1)[1].strip())
missing = [p for p in paths if not os.path.exists(p)]
print(f"bind mounts: {len(paths)}, missing: {missing}")
sys.exit(1 if missing or not paths else 0)
PY
echo "deployment files OK"
