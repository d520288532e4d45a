"""Overload: a segmenter admitting one call at a time is hit by many clients at once.

Refusals must be RESOURCE_EXHAUSTED and fast (they are the back-pressure
signal clients act on), and afterwards the server must answer normally and
report SERVING again.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent import futures
from pathlib import Path

from benchmarks.reliability.load import percentiles
from tests.support.processes import ServiceProcess, model_args
from tests.support.synthetic import make_scene


def segmenter_overload(repo: Path, model: str, scratch: Path, clients: int, seconds: float, image_px: int) -> dict:
    from dial_client import SegmenterClient
    from dial_client.errors import DialError

    image = make_scene(image_px, image_px, seed=7).image
    server = ServiceProcess("segmenter", model_args(repo, scratch / "cache-overload"),
                            env={"DIAL_MAX_CONCURRENT_RPCS": "1", "DIAL_MAX_WORKERS": "2"})
    try:
        server.wait_serving()
        refusals: list[float] = []
        codes: Counter = Counter()
        lock = threading.Lock()
        stop_at = time.monotonic() + seconds
        rss_before = server.rss_mb()

        def hammer(index: int) -> None:
            with SegmenterClient(server.address, timeout=60, retries=0) as client:
                while time.monotonic() < stop_at:
                    started = time.perf_counter()
                    try:
                        client.predict(image, model=model)
                        code = "OK"
                    except DialError as error:
                        code = error.code.name
                    with lock:
                        codes[code] += 1
                        if code == "RESOURCE_EXHAUSTED":
                            refusals.append(time.perf_counter() - started)

        with futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(hammer, range(clients)))
        recovered_started = time.perf_counter()
        with SegmenterClient(server.address, timeout=60, retries=0) as client:
            client.predict(image, model=model)
        recovered_ms = (time.perf_counter() - recovered_started) * 1000
        return {"service": "segmenter", "clients": clients, "seconds": seconds,
                "server_limit": "max_concurrent_rpcs=1", "requests": sum(codes.values()),
                "codes": dict(sorted(codes.items())), "refusal_latency_ms": percentiles(refusals),
                "only_ok_or_resource_exhausted": set(codes) <= {"OK", "RESOURCE_EXHAUSTED"},
                "recovered_call_ms": round(recovered_ms, 1), "serving_after": server.serving(),
                "server_rss_mb": {"before": round(rss_before, 1), "after": round(server.rss_mb(), 1)}}
    finally:
        server.stop()
