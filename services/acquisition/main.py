"""Rank patches by model uncertainty and keep annotation queues (``dial serve acquisition``)."""
from __future__ import annotations

import logging

from dial_client.wire import acquisition_pb2_grpc
from dial_services.acquisition.config import AcquisitionConfig
from dial_services.acquisition.servicer import SERVICE_NAME, AcquisitionModels, AcquisitionServicer
from dial_services.common.metrics import ServiceMetrics
from dial_services.common.server import RunningServer, serve_until_signalled, start_server

log = logging.getLogger(__name__)


def start(config: AcquisitionConfig, extra_interceptors: tuple = ()) -> RunningServer:
    """Start serving; models load on first use, so health is SERVING at once."""
    metrics = ServiceMetrics("acquisition")
    models = AcquisitionModels(config)
    servicer = AcquisitionServicer(config, models, metrics)

    def register(server):
        acquisition_pb2_grpc.add_AcquisitionServicer_to_server(servicer, server)
        return (SERVICE_NAME,)

    running = start_server(config, metrics, register, extra_interceptors)
    # A job store that refuses writes turns dial.v1.Acquisition NOT_SERVING in health, and back. The server
    # ("", readiness) stays as its capacity says: ranking needs no store, existing jobs can still be read,
    # and another replica shares the same full volume.
    servicer.jobs.start(on_store_health=lambda writable: running.set_impaired(SERVICE_NAME, not writable))
    running.on_stop(servicer.jobs.close)
    return running


def run(config: AcquisitionConfig) -> None:
    serve_until_signalled(start(config), config.grace_seconds)
