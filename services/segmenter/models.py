"""Models the segmenter serves: loaded from the repository, one batcher each."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from dial.errors import Exhausted
from dial.inference.predictors import OnnxPredictor
from dial.model.manifest import Manifest
from dial.model.repository import ModelNotFound, ModelRef, ModelRepository
from dial_services.common.call_guard import DeadlineExpired
from dial_services.common.metrics import ServiceMetrics
from dial_services.segmenter.batching import BatchTimeout, DynamicBatcher, QueueFull
from dial_services.segmenter.config import SegmenterConfig

log = logging.getLogger(__name__)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


@dataclass
class LoadedModel:
    manifest: Manifest
    predictor: OnnxPredictor
    batcher: DynamicBatcher

    @property
    def provider(self) -> str:
        return self.predictor.provider

    def bound(self, deadline: float | None) -> "BoundPredictor":
        return BoundPredictor(self, deadline)


class BoundPredictor:
    """The Predictor interface over the batcher, for one call with its deadline."""

    def __init__(self, model: LoadedModel, deadline: float | None):
        self.manifest = model.manifest
        self.provider = model.provider
        self._model = model
        self._deadline = deadline

    def logits(self, batch: np.ndarray) -> np.ndarray:
        timeout = None
        if self._deadline is not None:
            timeout = self._deadline - time.monotonic()
            if timeout <= 0:
                raise DeadlineExpired()
        try:
            return self._model.batcher.submit(batch, timeout=timeout)
        except QueueFull:
            raise Exhausted(
                f"model {self.manifest.name}:{self.manifest.version} has a full inference queue; retry with backoff"
            ) from None
        except BatchTimeout:
            raise DeadlineExpired() from None


class ModelRegistry:
    def __init__(self, config: SegmenterConfig, metrics: ServiceMetrics):
        self.config = config
        self.repo = ModelRepository(config.model_repo, cache_dir=config.model_cache)
        self._loaded: dict[tuple[str, str], LoadedModel] = {}
        self._lock = threading.Lock()
        self.inference_seconds = metrics.histogram(
            "dial_inference_seconds", "ONNX Runtime time per batch", ["model", "version"])
        self.batch_size = metrics.histogram(
            "dial_inference_batch_size", "tiles per ONNX Runtime batch", ["model", "version"],
            buckets=BATCH_BUCKETS)
        self.request_seconds = metrics.histogram(
            "dial_inference_request_duration_seconds", "time a call's tiles took to run, queue wait included",
            ["model", "version"])
        self.queue_seconds = metrics.histogram(
            "dial_inference_queue_duration_seconds", "time a call's tiles waited for their batch to start",
            ["model", "version"])
        self.models_loaded = metrics.gauge(
            "dial_models_loaded", "models loaded and ready, by execution provider", ["model", "version", "provider"])

    def load_latest(self) -> list[LoadedModel]:
        """Load what an unpinned request of each model gets; a failure to load it stops start-up.

        The repository has already skipped (and logged) entries it cannot
        parse, and a name holding only exports has no "latest" to load:
        its versions load when a request pins one.
        """
        loaded = []
        for name in self.repo.names():
            try:
                ref = ModelRef(*self.repo.resolve(ModelRef(name)))
            except ModelNotFound as error:
                log.info("not loading %s at start-up: %s", name, error)
                continue
            loaded.append(self.get(ref))
        return loaded

    def get(self, ref: ModelRef) -> LoadedModel:
        # A pinned version already loaded needs no look at the repository;
        # "latest" does, so versions exported while serving are picked up.
        if ref.version is not None:
            loaded = self._loaded.get((ref.name, ref.version))
            if loaded is not None:
                return loaded
        name, version = self.repo.resolve(ref)
        key = (name, version)
        with self._lock:
            loaded = self._loaded.get(key)
            if loaded is None:
                loaded = self._load(name, version)
                self._loaded[key] = loaded
        return loaded

    def is_loaded(self, name: str, version: str) -> bool:
        return (name, version) in self._loaded

    def _load(self, name: str, version: str) -> LoadedModel:
        ref = ModelRef(name, version)
        manifest = self.repo.manifest(ref)
        predictor = OnnxPredictor(self.repo.onnx_path(ref), manifest,
                                  provider=None if self.config.provider == "auto" else self.config.provider,
                                  intra_op_threads=self.config.intra_op_threads)
        seconds = self.inference_seconds.labels(name, version)
        sizes = self.batch_size.labels(name, version)
        requests, queued = self.request_seconds.labels(name, version), self.queue_seconds.labels(name, version)

        def observe(n: int, elapsed: float) -> None:
            seconds.observe(elapsed)
            sizes.observe(n)

        def observe_request(queue_s: float, total_s: float) -> None:
            queued.observe(queue_s)
            requests.observe(total_s)

        batcher = DynamicBatcher(predictor.logits, max_batch_size=self.config.max_batch_size,
                                 max_queue_delay_s=self.config.max_queue_delay_ms / 1000.0,
                                 max_queue_size=self.config.max_queue_size, on_batch=observe,
                                 on_request=observe_request,
                                 name=f"batch-{name}-{version}")
        self.models_loaded.labels(name, version, predictor.provider).set(1)
        log.info("loaded %s:%s on %s", name, version, predictor.provider)
        return LoadedModel(manifest, predictor, batcher)

    def close(self) -> None:
        for model in self._loaded.values():
            model.batcher.close()
