"""``dial serve segmenter``: load the models, then serve until SIGTERM."""
from __future__ import annotations

import logging

from dial_client.wire import segmenter_pb2_grpc
from dial_services.common.metrics import ServiceMetrics
from dial_services.common.server import RunningServer, serve_until_signalled, start_server
from dial_services.segmenter.config import SegmenterConfig
from dial_services.segmenter.models import ModelRegistry
from dial_services.segmenter.servicer import SERVICE_NAME, SegmenterServicer

log = logging.getLogger(__name__)


def start(config: SegmenterConfig, extra_interceptors: tuple = ()) -> RunningServer:
    """Start serving; health is NOT_SERVING until every model has loaded.

    A model that cannot load (corrupt weights, bad manifest) stops start-up
    with its message, and health never turns SERVING.
    """
    metrics = ServiceMetrics("segmenter")
    registry = ModelRegistry(config, metrics)
    servicer = SegmenterServicer(config, registry, metrics)

    def register(server):
        segmenter_pb2_grpc.add_SegmenterServicer_to_server(servicer, server)
        return (SERVICE_NAME,)

    running = start_server(config, metrics, register, extra_interceptors, serving=False)
    running.on_stop(registry.close)
    try:
        loaded = registry.load_latest()
    except Exception:
        running.stop(0)
        raise
    if not loaded:
        log.warning("the model repository %s holds no models", config.model_repo)
    running.set_serving(True)
    return running


def run(config: SegmenterConfig) -> None:
    running = start(config)
    serve_until_signalled(running, config.grace_seconds)
