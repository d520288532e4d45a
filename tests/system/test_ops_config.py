"""The example alert rules and the Grafana dashboard in deploy/, checked offline: promtool accepts the rules, the
dashboard is JSON Grafana can import, and both query only the series DIAL names (checked against live services
in test_prometheus_scrape.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dial.json"


def _promtool() -> str:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing; .ci/run installs Debian's prometheus package"
    return promtool


def test_promtool_accepts_the_alert_rules():
    check = subprocess.run([_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_promtool_rejects_a_broken_rule(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: rate(dial_grpc_requests_total[5m]\n")
    check = subprocess.run([_promtool(), "check", "rules", str(broken)], capture_output=True, text=True, timeout=60)
    assert check.returncode != 0


def test_every_alert_says_how_bad_and_what_happened():
    import yaml

    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    assert {"DialTargetDown", "DialServerErrors", "DialUnaryLatencyHigh", "DialInferenceQueueWaitHigh",
            "DialMemoryNearLimit"} <= {r["alert"] for r in rules}
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_the_dashboard_is_importable_and_each_panel_queries_prometheus():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        for target in panel["targets"]:
            for used in ("$job",):
                assert used not in target["expr"] or used[1:] in variables
    assert "datasource" in variables
