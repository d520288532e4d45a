"""Dynamic batching of concurrent inference calls, as in Triton.

Calls that arrive within ``max_queue_delay`` of each other and share a model
and tile shape run as one ONNX Runtime batch of up to ``max_batch_size``
tiles. On a GPU that raises throughput a lot; on our 2-core CPUs it is
measured in ``benchmarks/`` and stays configurable (0 ms delay turns it off).
A bounded queue turns overload into RESOURCE_EXHAUSTED instead of latency,
and so does a memory budget that calls take their working memory from.

``on_request`` reports, per call, how long its tiles waited in the queue
before their batch started and how long the call took in all, so ops can
tell a slow model from a crowded one (Triton's queue and request durations).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import Callable

import numpy as np


class QueueFull(Exception):
    pass


class BatchTimeout(Exception):
    pass


class DynamicBatcher:
    def __init__(self, run: Callable[[np.ndarray], np.ndarray], *, max_batch_size: int, max_queue_delay_s: float,
                 max_queue_size: int, on_batch: Callable[[int, float], None] | None = None,
                 on_request: Callable[[float, float], None] | None = None, name: str = "batcher"):
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue_size = max_queue_size
        self._on_batch = on_batch
        self._on_request = on_request
        self._queue: deque[tuple[np.ndarray, Future]] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._pending = 0
        self._direct = max_queue_delay_s <= 0 or max_batch_size <= 1
        if not self._direct:
            self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
            self._thread.start()

    def submit(self, batch: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """Run ``batch`` (N, C, H, W), possibly together with other callers' tiles."""
        submitted = time.perf_counter()
        if self._direct:
            with self._cv:
                if self._pending >= self.max_queue_size:
                    raise QueueFull(self._pending)
                self._pending += 1
            try:
                started = time.perf_counter()
                out = self._run(batch)
                if self._on_batch:
                    self._on_batch(len(batch), time.perf_counter() - started)
                if self._on_request:
                    self._on_request(0.0, time.perf_counter() - submitted)
                return out
            finally:
                with self._cv:
                    self._pending -= 1
        future: Future = Future()
        future.queued_s = None  # set by the batch loop when the call's batch starts
        with self._cv:
            if self._closed:
                raise QueueFull(0)
            if len(self._queue) >= self.max_queue_size:
                raise QueueFull(len(self._queue))
            self._queue.append((batch, future))
            future.submitted = submitted
            self._cv.notify()
        try:
            out = future.result(timeout=timeout)
            if self._on_request:
                self._on_request(future.queued_s or 0.0, time.perf_counter() - submitted)
            return out
        except FutureTimeout:
            future.cancel()
            raise BatchTimeout() from None

    def _take(self) -> list[tuple[np.ndarray, Future]]:
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if self._closed and not self._queue:
                return []
            first = self._queue.popleft()
            taken, size = [first], len(first[0])
            deadline = time.monotonic() + self.max_queue_delay_s
            shape = first[0].shape[1:]
            while size < self.max_batch_size:
                match = next((item for item in self._queue if item[0].shape[1:] == shape
                              and size + len(item[0]) <= self.max_batch_size), None)
                if match is not None:
                    self._queue.remove(match)
                    taken.append(match)
                    size += len(match[0])
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cv.wait(remaining)
            return taken

    def _loop(self) -> None:
        while True:
            taken = self._take()
            if not taken:
                return
            live = [(x, f) for x, f in taken if f.set_running_or_notify_cancel()]
            if not live:
                continue
            started = time.perf_counter()
            for _, f in live:
                f.queued_s = started - f.submitted
            try:
                out = self._run(np.concatenate([x for x, _ in live]) if len(live) > 1 else live[0][0])
                if self._on_batch:
                    self._on_batch(sum(len(x) for x, _ in live), time.perf_counter() - started)
            except Exception as error:  # noqa: BLE001 - handed to every waiting caller
                for _, f in live:
                    f.set_exception(error)
                continue
            offset = 0
            for x, f in live:
                f.set_result(out[offset : offset + len(x)])
                offset += len(x)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()


class OverBudget(Exception):
    """A call's memory does not fit in what is left of the process's budget."""

    def __init__(self, wanted: int, in_use: int, limit: int):
        super().__init__(wanted, in_use, limit)
        self.wanted, self.in_use, self.limit = wanted, in_use, limit


class MemoryBudget:
    """Bytes that calls in flight may hold together; a call that does not fit is refused, not queued.

    Refusing at once (like a full inference queue) keeps worker threads free
    for calls that do fit; a caller retries with backoff. Without a bound,
    three large calls at once outgrew a 4 GiB pod.
    """

    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self._in_use = 0
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        return self._in_use

    def acquire(self, nbytes: int) -> None:
        with self._lock:
            if self._in_use + nbytes > self.limit:
                raise OverBudget(nbytes, self._in_use, self.limit)
            self._in_use += nbytes

    def release(self, nbytes: int) -> None:
        with self._lock:
            self._in_use -= nbytes


def tiler_bytes(manifest, height: int, width: int, batch_size: int, probabilities: bool) -> int:
    """Working memory of ``dial.inference.tiling.iter_blended_rows`` over an image ``width`` wide.

    One tile row of accumulators, the block handed out per tile row (with
    softmax temporaries for probabilities), and the batches in the three
    pipeline stages; an estimate from the array shapes, not a measurement.
    """
    tile_rows, tile_cols = min(height, manifest.tile_px), min(width, manifest.tile_px)
    row = tile_rows * width
    classes = manifest.n_classes
    accumulators = row * classes * 4 + (row * 4 if probabilities else 0)
    blocks = row * classes * 4 * 3 if probabilities else row * (classes * 4 + 1)
    batches = 3 * batch_size * (manifest.in_channels + classes) * tile_rows * tile_cols * 4
    return accumulators + blocks + batches
