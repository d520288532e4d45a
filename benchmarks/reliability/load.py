"""Load: N concurrent clients for T seconds against one service, then the server's memory.

Memory is read after a warm-up (first calls allocate arenas and ONNX Runtime
buffers) and after each quarter of the run. A leak shows as growth over the
second half, when the same work is repeated on a warm server; freed memory
stays in the process (the malloc tuning), so the first half may still climb
to the level the concurrency needs.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from concurrent import futures
from pathlib import Path
from typing import Callable

import numpy as np

from tests.support.processes import ServiceProcess, adapter_args, model_args
from tests.support.synthetic import make_scene


class Tally:
    """Outcomes of calls from many threads: status codes and latencies of successes, per method."""

    def __init__(self):
        self.lock = threading.Lock()
        self.codes: Counter = Counter()
        self.latencies: dict[str, list[float]] = defaultdict(list)

    def call(self, method: str, function: Callable[[], object]):
        from dial_client.errors import DialError

        started = time.perf_counter()
        try:
            result = function()
            code = "OK"
        except DialError as error:
            result, code = None, error.code.name
        elapsed = time.perf_counter() - started
        with self.lock:
            self.codes[code] += 1
            if code == "OK":
                self.latencies[method].append(elapsed)
        return result, code

    def summary(self, elapsed: float) -> dict:
        everything = [x for values in self.latencies.values() for x in values]
        return {
            "requests": sum(self.codes.values()),
            "ok": self.codes.get("OK", 0),
            "errors_by_code": {k: v for k, v in sorted(self.codes.items()) if k != "OK"},
            "throughput_per_s": round(self.codes.get("OK", 0) / elapsed, 2),
            "latency_ms": percentiles(everything),
            "latency_ms_by_method": {m: percentiles(v) for m, v in sorted(self.latencies.items())},
        }


def percentiles(seconds: list[float]) -> dict:
    if not seconds:
        return {"p50": None, "p99": None}
    ms = np.asarray(seconds) * 1000
    return {"p50": round(float(np.percentile(ms, 50)), 1), "p99": round(float(np.percentile(ms, 99)), 1)}


def run_workers(clients: int, seconds: float, worker: Callable[[int, float, Tally], None]) -> tuple[Tally, float]:
    tally = Tally()
    stop_at = time.monotonic() + seconds
    started = time.monotonic()
    with futures.ThreadPoolExecutor(clients) as pool:
        for done in [pool.submit(worker, i, stop_at, tally) for i in range(clients)]:
            done.result()
    return tally, time.monotonic() - started


def measured(server: ServiceProcess, clients: int, seconds: float, worker, segments: int = 4) -> dict:
    """Warm up, then the run in ``segments`` equal parts with the server's memory read after each."""
    run_workers(1, min(5.0, seconds / 4), worker)
    rss = [server.rss_mb()]
    total, elapsed = Tally(), 0.0
    for _ in range(segments):
        part, part_s = run_workers(clients, seconds / segments, worker)
        rss.append(server.rss_mb())
        elapsed += part_s
        total.codes.update(part.codes)
        for method, values in part.latencies.items():
            total.latencies[method].extend(values)
    result = total.summary(elapsed)
    half = segments // 2
    result.update(clients=clients, seconds=seconds,
                  server_rss_mb=[round(x, 1) for x in rss],
                  rss_growth_second_half_mb=round(rss[-1] - rss[half], 1),
                  serving_after=server.serving())
    return result


def _stateless_load(service: str, client_class, method: str, call, description: str, repo: Path, scratch: Path,
                    clients: int, seconds: float) -> dict:
    """Clients calling ``call(client)`` back to back against a ``dial serve SERVICE`` process."""
    server = ServiceProcess(service, model_args(repo, scratch / f"cache-{service}"))
    server.wait_serving()

    def worker(index: int, stop_at: float, tally: Tally) -> None:
        with client_class(server.address, timeout=300, retries=0, caller=f"load-{index}") as client:
            while time.monotonic() < stop_at:
                tally.call(method, lambda: call(client))

    try:
        return {"service": service, "call": description, **measured(server, clients, seconds, worker)}
    finally:
        server.stop()


def segmenter_load(repo: Path, model: str, scratch: Path, clients: int, seconds: float, image_px: int) -> dict:
    from dial_client import SegmenterClient

    image = make_scene(image_px, image_px, seed=7).image
    return _stateless_load("segmenter", SegmenterClient, "Predict", lambda c: c.predict(image, model=model),
                           f"Predict, {image_px}² uint8 tile, no clicks", repo, scratch, clients, seconds)


def adapter_load(repo: Path, model: str, scratch: Path, clients: int, seconds: float, image_px: int) -> dict:
    """Each client holds one session: add a click, predict, and adapt after every third click.

    Each session is read back and compared with the clicks its client had
    acknowledged before it is deleted, so lost clicks would show here too.
    """
    from dial_client import AdapterClient, Click

    image = make_scene(image_px, image_px, seed=7).image
    server = ServiceProcess("adapter", adapter_args(repo, scratch / "cache-ada", scratch / "sessions-load", steps=5))
    server.wait_serving()
    books = Counter()
    lock = threading.Lock()

    def worker(index: int, stop_at: float, tally: Tally) -> None:
        rng = np.random.default_rng(index)
        with AdapterClient(server.address, timeout=300, retries=0, caller=f"load-{index}") as client:
            session, _ = tally.call("CreateSession", lambda: client.create_session(image, model=model))
            if session is None:
                return
            acknowledged = []
            while time.monotonic() < stop_at:
                click = Click(int(rng.integers(image_px)), int(rng.integers(image_px)), int(rng.integers(2)))
                _, code = tally.call("AddClicks", lambda: session.add_clicks([click]))
                if code == "OK":
                    acknowledged.append(click)
                    if len(acknowledged) % 3 == 0:
                        tally.call("Adapt", session.adapt)
                tally.call("Predict", session.predict)
            # Read back before deleting, so that a lost click would be counted here.
            info, _ = tally.call("GetSession", session.get)
            kept = info.clicks if info is not None else ()
            tally.call("DeleteSession", session.delete)
        with lock:
            books["sessions"] += 1
            books["sessions_lost"] += info is None
            books["clicks_acknowledged"] += len(acknowledged)
            books["clicks_lost"] += len(acknowledged) - sum(1 for a, b in zip(acknowledged, kept) if a == b)

    try:
        result = measured(server, clients, seconds, worker)
        result.update(books)
        return {"service": "adapter", "call": f"one session per client on a {image_px}² tile: AddClicks, Predict, "
                                              "Adapt (fast, 5 steps) after every 3rd click, then Get and Delete",
                **result}
    finally:
        server.stop()


def acquisition_load(repo: Path, model: str, scratch: Path, clients: int, seconds: float, image_px: int) -> dict:
    from dial_client import AcquisitionClient

    image = make_scene(image_px, image_px, seed=7).image
    patch = image_px // 4
    return _stateless_load("acquisition", AcquisitionClient, "RankPatches",
                           lambda c: c.rank(image, model=model, strategy="entropy", patch_size=patch),
                           f"RankPatches, entropy, {image_px}² tile, {patch} px patches", repo, scratch, clients,
                           seconds)
