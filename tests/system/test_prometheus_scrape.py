"""A real Prometheus scrapes the three services, started as ``dial serve`` processes, and answers the p99
latency query by method and code; every metric the Grafana dashboard and the alert rules name is exposed.

Everything listens on loopback; Prometheus scrapes every second so a few calls are enough for ``rate``.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import pytest

from tests.support.synthetic import make_scene
from dial_client.wire import (
    acquisition_pb2, acquisition_pb2_grpc, adapter_pb2, adapter_pb2_grpc, common_pb2, segmenter_pb2,
    image_to_proto, segmenter_pb2_grpc,
)
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dial.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
SERVICES = ("segmenter", "adapter", "acquisition")
P99 = ("histogram_quantile(0.99, sum by (le, service, method, code) "
       "(rate(dial_grpc_request_duration_seconds_bucket[30s])))")


def _get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return reply.read()


def _query(prometheus: str, expr: str) -> dict:
    return json.loads(_get(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))


@pytest.fixture(scope="module")
def stack(tiny_repo, tmp_path_factory):
    """The three services with metrics ports, and a Prometheus scraping them every second: (servers, url)."""
    from tests.support.processes import ServiceProcess, adapter_args, model_args

    prometheus_bin = shutil.which("prometheus")
    assert prometheus_bin, "prometheus is missing; .ci/run installs Debian's prometheus package"
    scratch = tmp_path_factory.mktemp("scrape")
    metrics_ports = {name: free_port() for name in SERVICES}
    args = {
        "segmenter": model_args(tiny_repo, scratch / "cache-seg"),
        "adapter": adapter_args(tiny_repo, scratch / "cache-ada", scratch / "sessions", steps=1),
        "acquisition": [*model_args(tiny_repo, scratch / "cache-acq"), "--job-store", str(scratch / "jobs"),
                        "--session-store", str(scratch / "sessions"), "--intra-op-threads", "1"],
    }
    servers = {name: ServiceProcess(name, [*args[name], "--metrics-port", str(metrics_ports[name])],
                                    log_dir=scratch) for name in SERVICES}
    prometheus = None
    try:
        for server in servers.values():
            server.wait_serving(120)
        config = scratch / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML, and needs no YAML writer
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                               for name, port in metrics_ports.items()],
        }))
        port = free_port()
        log = open(scratch / "prometheus.log", "wb")
        prometheus = subprocess.Popen(
            [prometheus_bin, f"--config.file={config}", f"--storage.tsdb.path={scratch / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(f"{url}/-/ready", timeout=1):
                    break
            except OSError:
                pass
            assert prometheus.poll() is None and time.monotonic() < deadline, \
                (scratch / "prometheus.log").read_text(errors="replace")[-2000:]
            time.sleep(0.2)
        yield servers, url, metrics_ports
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(30)
        for server in servers.values():
            server.stop()


def _calls(servers) -> None:
    """A few calls on each service, successes and failures, so latency has samples under several codes."""
    image = make_scene(64, 64, seed=3).image
    with grpc.insecure_channel(servers["segmenter"].address) as channel:
        stub = segmenter_pb2_grpc.SegmenterStub(channel)
        stub.ListModels(segmenter_pb2.ListModelsRequest(), timeout=30)
        request = segmenter_pb2.PredictRequest(
            model=common_pb2.ModelRef(name="tiny"),
            image=image_to_proto(image))
        stub.Predict(request, timeout=60)
        with pytest.raises(grpc.RpcError):
            stub.GetModel(segmenter_pb2.GetModelRequest(model=common_pb2.ModelRef(name="absent")), timeout=30)
    with grpc.insecure_channel(servers["adapter"].address) as channel:
        adapter_pb2_grpc.AdapterStub(channel).ListSessions(adapter_pb2.ListSessionsRequest(), timeout=30)
    with grpc.insecure_channel(servers["acquisition"].address) as channel:
        with pytest.raises(grpc.RpcError):
            acquisition_pb2_grpc.AcquisitionStub(channel).GetQueueJob(
                acquisition_pb2.GetQueueJobRequest(name="queueJobs/absent"), timeout=30)


def test_prometheus_answers_p99_latency_by_method_and_code(stack):
    servers, prometheus, _ = stack
    began = time.monotonic()
    series: dict[tuple[str, str, str], float] = {}
    # rate() needs a count that grows between two scrapes; a series first scraped at 1 and never again has
    # none, so the calls go on while we ask.
    while time.monotonic() - began < 30:
        _calls(servers)
        time.sleep(1)
        reply = _query(prometheus, P99)
        assert reply["status"] == "success", reply
        series = {(r["metric"]["service"], r["metric"]["method"], r["metric"]["code"]): float(r["value"][1])
                  for r in reply["data"]["result"] if r["value"][1] != "NaN"}
        if {s for s, _, _ in series} == set(SERVICES) and ("segmenter", "Predict", "OK") in series:
            break
    assert {s for s, _, _ in series} == set(SERVICES), series
    assert series[("segmenter", "Predict", "OK")] > 0
    assert any(code != "OK" for _, _, code in series), series
    up = _query(prometheus, "up")["data"]["result"]
    assert {r["metric"]["job"]: r["value"][1] for r in up} == {name: "1" for name in SERVICES}


def _exposed_names(metrics_ports) -> set[str]:
    """Every series name the services expose: each family's TYPE name, and a histogram's _bucket/_sum/_count."""
    names = {"up"}  # made by Prometheus for every target
    for port in metrics_ports.values():
        for line in _get(f"http://127.0.0.1:{port}/metrics").decode().splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                names.add(name)
                if kind == "histogram":
                    names.update(f"{name}_{part}" for part in ("bucket", "sum", "count"))
    return names


def _metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    words = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", without_ranges))
    return {w for w in words if w.startswith(("dial_", "process_")) or w == "up"}


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def _alert_queries() -> list[str]:
    import yaml

    return [r["expr"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def test_every_metric_the_dashboard_and_alerts_query_is_exposed(stack):
    _, prometheus, metrics_ports = stack
    exposed = _exposed_names(metrics_ports)
    queries = _dashboard_queries() + _alert_queries()
    named = set().union(*map(_metric_names, queries))
    assert {"dial_grpc_request_duration_seconds_bucket", "process_resident_memory_bytes"} <= named
    assert named <= exposed, named - exposed
    for expr in queries:
        # Grafana's own variables, filled in as Grafana would.
        expr = expr.replace("$__rate_interval", "1m").replace("$job", "segmenter|adapter|acquisition")
        reply = _query(prometheus, expr)
        assert reply["status"] == "success", (expr, reply)


def test_the_alert_rules_are_loaded_and_healthy(stack):
    _, prometheus, _ = stack
    deadline = time.monotonic() + 15
    while True:
        groups = json.loads(_get(f"{prometheus}/api/v1/rules"))["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r.get("lastEvaluation", "").startswith("20") and r["health"] != "unknown" for r in rules):
            break
        assert time.monotonic() < deadline, rules
        time.sleep(0.5)
    assert len(rules) == len(_alert_queries())
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    firing = {r["name"] for r in rules if r["state"] == "firing"}
    assert "DialTargetDown" not in firing
