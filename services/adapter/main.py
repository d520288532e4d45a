"""``dial serve adapter``: DISCA adaptation sessions, durable in a session store."""
from __future__ import annotations

import logging
import threading

import torch

from dial.model.repository import ModelRepository
from dial_client.wire import adapter_pb2_grpc
from dial_services.adapter.config import AdapterConfig
from dial_services.adapter.servicer import SERVICE_NAME, AdapterServicer
from dial_services.adapter.sessions import SessionManager
from dial_services.adapter.store import SessionStore
from dial_services.common.metrics import ServiceMetrics
from dial_services.common.server import RunningServer, serve_until_signalled, start_server

log = logging.getLogger(__name__)


def start(config: AdapterConfig, extra_interceptors: tuple = ()) -> RunningServer:
    if config.intra_op_threads:
        # Adaptation runs in eager torch; on a shared CPU fewer threads than cores avoids OpenMP spin-waits.
        torch.set_num_threads(config.intra_op_threads)
    metrics = ServiceMetrics("adapter")
    active = metrics.gauge("dial_adapter_sessions_in_memory", "sessions held in memory now")
    evictions = metrics.counter("dial_adapter_session_evictions", "sessions moved out of memory to the store")
    checkpoints = metrics.histogram("dial_session_checkpoint_duration_seconds",
                                    "time to commit one session change to the store")
    store = SessionStore(config.session_store)
    timed_store = _TimedStore(store, checkpoints)
    sessions = SessionManager(timed_store, ModelRepository(config.model_repo, config.model_cache),
                              ttl_seconds=config.session_ttl_seconds, max_in_memory=config.max_sessions_in_memory,
                              max_per_caller=config.max_sessions_per_caller, on_evict=evictions.inc,
                              on_active=active.set)
    servicer = AdapterServicer(config, sessions, metrics)

    def register(server):
        adapter_pb2_grpc.add_AdapterServicer_to_server(servicer, server)
        return (SERVICE_NAME,)

    running = start_server(config, metrics, register, extra_interceptors)
    stop = threading.Event()

    def sweep():
        while not stop.wait(config.sweep_seconds):
            try:
                removed = sessions.sweep()
                if removed:
                    log.info("removed %d expired sessions", removed)
            except Exception:  # noqa: BLE001 - a failed sweep must not stop the next one
                log.exception("session sweep failed")

    if config.session_ttl_seconds > 0:
        threading.Thread(target=sweep, name="adapter-sweeper", daemon=True).start()
    running.on_stop(stop.set)
    running.sessions = sessions
    return running


class _TimedStore:
    """The store with its commits timed into a histogram; everything else passes through."""

    def __init__(self, store: SessionStore, histogram):
        self._store = store
        self._histogram = histogram

    def commit(self, record, state=None):
        with self._histogram.time():
            return self._store.commit(record, state)

    def create(self, record, image, p0):
        with self._histogram.time():
            return self._store.create(record, image, p0)

    def __getattr__(self, name):
        return getattr(self._store, name)


def run(config: AdapterConfig) -> None:
    running = start(config)
    serve_until_signalled(running, config.grace_seconds)
