"""Peak memory of a segmenter process under concurrent large Predict calls.

``python -m benchmarks.bench_predict_memory [--side 3500] [--calls 3]``

Starts ``dial serve segmenter`` on the shipped model, samples the process's
RSS with psutil every 20 ms, and sends ``--calls`` Predicts at once, twice:

- ``oversize``: ``--side``² with probabilities, whose reply is larger than
  the server's message limit (refused before any work since the reply-size
  check; computed and then dropped before it);
- ``largest_reply``: the largest square whose reply with probabilities still
  fits the limit, so each call runs and the memory budget decides.

``--server-pythonpath`` runs the server from another source tree (an older
commit checked out elsewhere) for a before/after comparison.
"""
from __future__ import annotations

import argparse
import json
import math
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import psutil

from tests.support.processes import ServiceProcess, model_args

MAX_MESSAGE_BYTES = 64 * 2**20


class PeakRss:
    """The highest RSS of a process while the block runs, sampled every ``period_s``."""

    def __init__(self, pid: int, period_s: float = 0.02):
        self.process = psutil.Process(pid)
        self.period_s = period_s
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.period_s)

    def __enter__(self) -> "PeakRss":
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def concurrent_predicts(server: ServiceProcess, manifest, side: int, calls: int, probabilities: bool) -> dict:
    from dial_client.wire import common_pb2, segmenter_pb2, segmenter_pb2_grpc

    image = np.random.default_rng(0).integers(0, 255, (side, side, manifest.n_bands), dtype=np.uint8)
    request = segmenter_pb2.PredictRequest(
        model=common_pb2.ModelRef(name=manifest.name),
        image=common_pb2.Image(data=image.tobytes(), dtype=common_pb2.DATA_TYPE_UINT8, height=side, width=side,
                               bands=manifest.n_bands),
        return_probabilities=probabilities)
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    before = server.rss_mb()

    def one() -> tuple[str, float]:
        started = time.monotonic()
        with grpc.insecure_channel(server.address, options=options) as channel:
            try:
                segmenter_pb2_grpc.SegmenterStub(channel).Predict(request, timeout=600)
                code = "OK"
            except grpc.RpcError as error:
                code = error.code().name
        return code, time.monotonic() - started

    with PeakRss(server.process.pid) as peak, futures.ThreadPoolExecutor(calls) as pool:
        outcomes = list(pool.map(lambda _: one(), range(calls)))
    return {"side_px": side, "calls": calls, "probabilities": probabilities,
            "codes": sorted(code for code, _ in outcomes),
            "seconds_per_call": sorted(round(s, 2) for _, s in outcomes),
            "rss_before_mib": round(before), "peak_rss_mib": round(peak.peak / 2**20),
            "growth_mib": round(peak.peak / 2**20 - before)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repo", type=Path, default=Path("models"))
    parser.add_argument("--model", default="landcover")
    parser.add_argument("--side", type=int, default=3500)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--server-pythonpath", help="run the server from this source tree instead")
    args = parser.parse_args()

    from dial.model.repository import ModelRepository

    manifest = ModelRepository(args.model_repo).manifest(args.model)
    cache = Path(f"/tmp/dial-bench-memory-cache-{args.model}")
    env = {"PYTHONPATH": args.server_pythonpath} if args.server_pythonpath else None
    server = ServiceProcess("segmenter", [*model_args(args.model_repo, cache),
                                          "--max-message-bytes", str(MAX_MESSAGE_BYTES), "--max-workers", "8"],
                            env=env)
    try:
        server.wait_serving()
        largest = math.isqrt((MAX_MESSAGE_BYTES - 4096) // (1 + manifest.n_classes))
        results = {
            "model": f"{manifest.name}:{manifest.version} ({manifest.n_classes} classes)",
            "server_code": args.server_pythonpath or "this tree",
            "rss_serving_idle_mib": round(server.rss_mb()),
            "oversize": concurrent_predicts(server, manifest, args.side, args.calls, True),
            "largest_reply": concurrent_predicts(server, manifest, largest, args.calls, True),
        }
    finally:
        server.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
