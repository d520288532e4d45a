"""The README's main command: ``dial up`` starts every service and they answer health checks."""
import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.synthetic import make_scene
from dial_services.commands.serve import SERVICES
from tests.support.ports import free_port_range


def _serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_dial_up_serves_every_service_and_stops_cleanly(tiny_repo, tmp_path):
    services = list(SERVICES)
    assert services[0] == "segmenter"
    base = free_port_range(2 * len(services))
    metrics_base = base + len(services)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dial_services.cli", "up", "--model-repo", str(tiny_repo),
         "--base-port", str(base), "--metrics-base-port", str(metrics_base), "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    addresses = [f"127.0.0.1:{base + i}" for i in range(len(services))]
    try:
        deadline = time.monotonic() + 240
        pending = set(addresses)
        while pending and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            pending = {a for a in pending if not _serving(a)}
            time.sleep(0.5)
        assert not pending, f"not serving: {pending}"
        from dial_client import SegmenterClient

        with SegmenterClient(addresses[0]) as client:
            assert client.predict(make_scene(64, 64, seed=1).image, model="tiny").labels.shape == (64, 64)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            output = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("dial up did not stop within 60 s of SIGTERM")
    assert proc.returncode == 0, output[-3000:]
    for name, address in zip(services, addresses):
        assert f"{name}" in output and address in output
