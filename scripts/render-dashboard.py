#!/usr/bin/env python3
"""Renders the Grafana dashboard's panels from a running Prometheus to one PNG, so the README
can show the dashboard with real data where Grafana itself is not available.

usage: render-dashboard.py PROMETHEUS_PORT DASHBOARD_JSON OUTPUT_PNG   (needs matplotlib)
"""
import json
import sys
import time
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

port, dashboard_path, output = sys.argv[1], sys.argv[2], sys.argv[3]
dashboard = json.load(open(dashboard_path))
end = time.time()
start = end - 120


def query_range(expr):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 5})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query_range?{params}", timeout=10) as r:
        return json.load(r)["data"]["result"]


def legend(metric, fmt):
    if fmt:
        for key, value in metric.items():
            fmt = fmt.replace("{{" + key + "}}", value).replace("{{ " + key + " }}", value)
        return fmt
    labels = {k: v for k, v in metric.items() if k not in ("__name__", "instance", "job")}
    return ",".join(f"{k}={v[:8]}" for k, v in labels.items()) or metric.get("__name__", "value")


panels = dashboard["panels"]
cols = 2
rows = (len(panels) + cols - 1) // cols
fig, axes = plt.subplots(rows, cols, figsize=(14, 2.6 * rows))
for ax, panel in zip(axes.flat, panels):
    ax.set_title(panel["title"], fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    for target in panel.get("targets", []):
        expr = target["expr"].replace("$tenant_id", ".*").replace("$queue", ".*").replace("$__rate_interval", "1m")
        for series in query_range(expr)[:6]:
            xs = [float(t) - end for t, _ in series["values"]]
            ys = [float(v) for _, v in series["values"]]
            ax.plot(xs, ys, linewidth=1.2, label=legend(series["metric"], target.get("legendFormat", ""))[:40])
    if ax.lines:
        ax.legend(fontsize=6, loc="upper left")
    ax.set_xlabel("seconds ago", fontsize=7)
for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
fig.suptitle(f"{dashboard['title']} (rendered from Prometheus, last 2 minutes)", fontsize=11)
fig.tight_layout()
fig.savefig(output, dpi=80)
print(f"wrote {output}")
