"""DIAL services as child processes on loopback, for the system tests and the benchmarks.

Every service under test is a real ``dial serve`` process, so its memory is
its own, kill -9 is a real kill -9 and a crash shows as a crash.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.ports import free_port


class ServiceProcess:
    """``dial serve SERVICE`` on a loopback port; ``port`` reuses one, as a restarted pod keeps its address."""

    def __init__(self, service: str, args: list[str], *, port: int | None = None,
                 env: dict[str, str] | None = None, log_dir: Path | None = None):
        self.service = service
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        log_dir = log_dir or Path(tempfile.mkdtemp(prefix="dial-reliability-logs-"))
        self.log_path = log_dir / f"{service}-{self.port}-{time.monotonic_ns()}.log"
        command = [sys.executable, "-m", "dial_services.cli", "serve", service, "--host", "127.0.0.1",
                   "--port", str(self.port), "--metrics-port", "0", *args]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=log,
                                            stderr=subprocess.STDOUT)
        self.channel = grpc.insecure_channel(self.address)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def health_status(self) -> str:
        """SERVING, NOT_SERVING, or the gRPC code when health cannot be asked (e.g. UNAVAILABLE)."""
        try:
            reply = self.health.Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError as error:
            return error.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def serving(self) -> bool:
        return self.health_status() == "SERVING"

    def wait_serving(self, timeout_s: float = 300) -> float:
        """Seconds until SERVING; raises with the log's tail when the process exits or times out."""
        started = time.monotonic()
        while not self.serving():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.service} exited with status {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() - started > timeout_s:
                self.stop()
                raise RuntimeError(f"{self.service} did not become SERVING in {timeout_s} s:\n{self.log_tail()}")
            time.sleep(0.1)
        return time.monotonic() - started

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def rss_mb(self) -> float:
        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self.channel.close()

    def stop(self) -> None:
        self.channel.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)


def model_args(repo: Path, cache: Path) -> list[str]:
    return ["--model-repo", str(repo), "--model-cache", str(cache)]


def adapter_args(repo: Path, cache: Path, store: Path, steps: int) -> list[str]:
    """An adapter on the fast variant with one torch thread, so that several share 2 cores."""
    return [*model_args(repo, cache), "--session-store", str(store), "--adaptation-variant", "fast",
            "--adaptation-steps", str(steps), "--intra-op-threads", "1"]
