#!/usr/bin/env python3
"""Deletes the broker queues of tenants in the test database, so repeated test runs do not
pile up quorum queues on the local RabbitMQ. Quiet and harmless when anything is missing."""
import json
import os
import subprocess
import urllib.parse
import urllib.request

db = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/msgsvc_test")
mgmt = urllib.parse.urlsplit(os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672"))
try:
    ids = set(subprocess.run(["psql", db, "-Atc", "SELECT id FROM tenants"], capture_output=True, text=True, timeout=30).stdout.split())
except (OSError, subprocess.SubprocessError):
    ids = set()
if not ids:
    raise SystemExit(0)
base = f"{mgmt.scheme}://{mgmt.hostname}:{mgmt.port}"
auth = urllib.request.HTTPBasicAuthHandler(urllib.request.HTTPPasswordMgrWithDefaultRealm())
auth.passwd.add_password(None, base, mgmt.username or "guest", mgmt.password or "guest")
opener = urllib.request.build_opener(auth)
try:
    queues = json.load(opener.open(f"{base}/api/queues?columns=name,vhost", timeout=30))
except OSError:
    raise SystemExit(0)
deleted = 0
for q in queues:
    parts = q["name"].split(".")
    if len(parts) >= 3 and parts[0] == "tenant" and parts[1] in ids:
        vhost = urllib.parse.quote(q["vhost"], safe="")
        name = urllib.parse.quote(q["name"], safe="")
        try:
            opener.open(urllib.request.Request(f"{base}/api/queues/{vhost}/{name}", method="DELETE"), timeout=30)
            deleted += 1
        except OSError:
            pass
print(f"deleted {deleted} broker queues left by earlier test runs")
