"""Rank patches by model uncertainty and keep annotation queues (``dial serve acquisition``)."""
from __future__ import annotations

import logging

from pathlib import Path

from pydantic import Field

from dial_client.wire import acquisition_pb2_grpc
from dial_services.acquisition.servicer import SERVICE_NAME, AcquisitionModels, AcquisitionServicer
from dial_services.common.config import SessionStoreConfig
from dial_services.common.metrics import ServiceMetrics
from dial_services.common.server import RunningServer, serve_until_signalled, start_server

log = logging.getLogger(__name__)


class AcquisitionConfig(SessionStoreConfig):
    port: int = Field(50053, ge=0, le=65535)
    queue_workers: int = Field(1, ge=1, le=64, description="queue jobs computed at once, in background threads")
    job_store: Path = Field(Path(".dial/queue-jobs"),
                            description="queue jobs, on a folder every replica shares so any replica answers for any")
    job_ttl_seconds: float = Field(24 * 3600.0, ge=0, description="how long a finished job is kept after its last "
                                                                 "change (marking patches done is one); 0 keeps it")
    job_lease_seconds: float = Field(60.0, gt=0, description="a job whose replica stops renewing it for this long "
                                                            "is taken over by another replica")
    max_live_jobs_per_caller: int = Field(16, ge=1, description="pending or running jobs one caller may have")
    max_rasters_per_job: int = Field(10000, ge=1)
    max_page_size: int = Field(1000, ge=1)
    default_page_size: int = Field(50, ge=1)


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


def add_arguments(parser) -> None:
    """Flags for ``dial serve acquisition``; each also reads ``DIAL_<NAME>`` from the environment."""
    parser.add_argument("--model-repo", dest="model_repo", help="model repository folder (default: models)")
    parser.add_argument("--model-cache", dest="model_cache", help="writable folder for ONNX exports")
    parser.add_argument("--session-store", dest="session_store",
                        help="the Adapter's session store, read to rank sessions (default: .dial/sessions)")
    parser.add_argument("--session-ttl-seconds", dest="session_ttl_seconds", type=float,
                        help="the Adapter's session expiry, so expired sessions are not ranked (0: never)")
    parser.add_argument("--queue-workers", dest="queue_workers", type=int,
                        help="queue jobs computed at once (default 1)")
    parser.add_argument("--job-store", dest="job_store",
                        help="folder of queue jobs, shared by every replica (default: .dial/queue-jobs)")
    parser.add_argument("--job-ttl-seconds", dest="job_ttl_seconds", type=float,
                        help="how long a finished queue job is kept after its last change (0: forever)")
    parser.add_argument("--intra-op-threads", dest="intra_op_threads", type=int)


CONFIG = AcquisitionConfig
DEFAULT_PORTS = (50053, 9103)
