"""Reliability of a segmenter under load and overload, on 127.0.0.1 only.

    python -m benchmarks.reliability load --model-repo models --model NAME --clients 4 --seconds 30
    python -m benchmarks.reliability overload --train-tiny
    python -m benchmarks.reliability both --train-tiny --json out/reliability.json

The server is a separate ``dial serve segmenter`` process, so its RSS is its
own and a crash shows as a crash.

- load: N clients call Predict back to back for T seconds after a warm-up;
  reports p50/p99 latency, throughput, errors by status code and the
  server's RSS after warm-up and at the end (growth suggests a leak).
- overload: a server admitting one call at a time (max_concurrent_rpcs=1)
  is hit by many clients at once. Refusals must be RESOURCE_EXHAUSTED and
  fast (they are the back-pressure signal clients act on), and afterwards
  the server must answer normally and report SERVING again.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.common import free_port
from dial.synthetic import make_scene


def train_tiny(folder: Path) -> tuple[Path, str]:
    """A briefly trained 6-class model, as the test fixtures make it: (repository, name)."""
    from dial.synthetic import make_dataset
    from dial.training.trainer import TrainConfig, train

    make_dataset(folder / "scenes", 8, size=128, seed=1)
    repo = folder / "models"
    train(TrainConfig(data=str(folder / "scenes"), name="tiny", repo=str(repo), crop_px=64, batch_size=2,
                      iterations=6, checkpoint_every=3, workdir=str(folder / "work"), radius_px=5.0, tile_px=128,
                      overlap_px=32), command="reliability harness")
    return repo, "tiny"


class Server:
    """``dial serve segmenter`` in a child process on a free loopback port."""

    def __init__(self, model_repo: Path, env: dict[str, str] | None = None, start_timeout_s: float = 300):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        cache = tempfile.mkdtemp(prefix="dial-reliability-cache-")
        command = [sys.executable, "-m", "dial_services.cli", "serve", "segmenter", "--host", "127.0.0.1",
                   "--port", str(self.port), "--metrics-port", "0", "--model-repo", str(model_repo),
                   "--model-cache", cache]
        self.process = subprocess.Popen(command, env={**os.environ, **(env or {})})
        self.channel = grpc.insecure_channel(self.address)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + start_timeout_s
        while not self.serving():
            if self.process.poll() is not None:
                raise RuntimeError(f"the segmenter exited with status {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the segmenter did not become SERVING in time")
            time.sleep(0.2)

    def serving(self) -> bool:
        try:
            reply = self.health.Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def rss_mb(self) -> float:
        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        self.channel.close()
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def run_clients(address: str, model: str, image: np.ndarray, clients: int, seconds: float,
                timeout_s: float = 60) -> tuple[list[float], Counter, float]:
    """N clients calling Predict back to back: (latencies of successes, codes, elapsed seconds)."""
    from dial_client import SegmenterClient
    from dial_client.errors import DialError

    latencies: list[float] = []
    codes: Counter = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client_loop(index: int) -> None:
        with SegmenterClient(address, timeout=timeout_s, retries=0, caller=f"load-{index}") as client:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    client.predict(image, model=model)
                    code = "OK"
                except DialError as error:
                    code = error.code.name
                elapsed = time.perf_counter() - started
                with lock:
                    codes[code] += 1
                    if code == "OK":
                        latencies.append(elapsed)

    started = time.monotonic()
    with futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_loop, range(clients)))
    return latencies, codes, time.monotonic() - started


def summary(latencies: list[float], codes: Counter, elapsed: float) -> dict:
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return {"calls": sum(codes.values()), "ok": codes.get("OK", 0),
            "errors_by_code": {k: v for k, v in codes.items() if k != "OK"},
            "throughput_per_s": round(codes.get("OK", 0) / elapsed, 2),
            "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 1),
                           "p99": round(float(np.percentile(ms, 99)), 1)}}


def load_test(model_repo: Path, model: str, clients: int, seconds: float, size_px: int) -> dict:
    image = make_scene(size_px, size_px, seed=7).image
    server = Server(model_repo)
    try:
        run_clients(server.address, model, image, 1, min(5.0, seconds))  # warm-up: first calls touch memory
        rss_start = server.rss_mb()
        result = summary(*run_clients(server.address, model, image, clients, seconds))
        result.update(clients=clients, seconds=seconds, image_px=size_px,
                      server_rss_mb={"after_warmup": round(rss_start, 1), "end": round(server.rss_mb(), 1)},
                      serving_after=server.serving())
        return result
    finally:
        server.stop()


def overload_test(model_repo: Path, model: str, clients: int, seconds: float, size_px: int) -> dict:
    from dial_client import SegmenterClient

    image = make_scene(size_px, size_px, seed=7).image
    server = Server(model_repo, env={"DIAL_MAX_CONCURRENT_RPCS": "1", "DIAL_MAX_WORKERS": "2"})
    try:
        refusals: list[float] = []
        codes: Counter = Counter()
        lock = threading.Lock()
        stop_at = time.monotonic() + seconds

        def hammer(index: int) -> None:
            with SegmenterClient(server.address, timeout=60, retries=0) as client:
                while time.monotonic() < stop_at:
                    started = time.perf_counter()
                    try:
                        client.predict(image, model=model)
                        code = "OK"
                    except Exception as error:  # noqa: BLE001 - every outcome is counted
                        code = getattr(getattr(error, "code", None), "name", type(error).__name__)
                    with lock:
                        codes[code] += 1
                        if code == "RESOURCE_EXHAUSTED":
                            refusals.append(time.perf_counter() - started)

        with futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(hammer, range(clients)))
        refused_ms = np.asarray(refusals) * 1000 if refusals else np.asarray([np.nan])
        recovered_started = time.perf_counter()
        with SegmenterClient(server.address, timeout=60, retries=0) as client:
            client.predict(image, model=model)
        return {"clients": clients, "seconds": seconds, "codes": dict(codes),
                "refusal_ms": {"p50": round(float(np.percentile(refused_ms, 50)), 2),
                               "p99": round(float(np.percentile(refused_ms, 99)), 2)},
                "only_ok_or_resource_exhausted": set(codes) <= {"OK", "RESOURCE_EXHAUSTED"},
                "recovered_call_ms": round((time.perf_counter() - recovered_started) * 1000, 1),
                "serving_after": server.serving()}
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["load", "overload", "both"])
    parser.add_argument("--model-repo", type=Path, default=Path("models"))
    parser.add_argument("--model", help="model name (default: the first in the repository)")
    parser.add_argument("--train-tiny", action="store_true", help="train a tiny model into a temporary folder")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--overload-clients", type=int, default=16)
    parser.add_argument("--image-px", type=int, default=256)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="dial-reliability-") as scratch:
        repo, model = args.model_repo, args.model
        if args.train_tiny:
            repo, model = train_tiny(Path(scratch))
        if model is None:
            from dial.model.repository import ModelRepository

            names = ModelRepository(repo).names()
            if not names:
                parser.error(f"{repo} holds no models; pass --model-repo or --train-tiny")
            model = names[0]
        results = {}
        if args.mode in ("load", "both"):
            results["load"] = load_test(repo, model, args.clients, args.seconds, args.image_px)
        if args.mode in ("overload", "both"):
            results["overload"] = overload_test(repo, model, args.overload_clients, min(args.seconds, 10.0),
                                                args.image_px)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    overload = results.get("overload")
    healthy = all(r.get("serving_after") for r in results.values())
    return 0 if healthy and (overload is None or overload["only_ok_or_resource_exhausted"]) else 1


if __name__ == "__main__":
    sys.exit(main())
