"""Start a DIAL gRPC server with health, reflection, metrics and a clean stop.

On SIGTERM the health status turns NOT_SERVING first (so Kubernetes stops
routing new calls), then ``server.stop(grace)`` lets in-flight calls finish.
Message limits are set explicitly: gRPC's 4 MB default is smaller than one
512x512 tile with its probabilities.

Health tells the truth about capacity as well as start-up and draining:
while every worker thread runs a call, the server and its services report
NOT_SERVING (so Kubernetes routes new calls to other replicas) and SERVING
again as soon as a worker is free. The ``liveness`` service only says that
the process answers, so a replica that is busy, not broken, is not restarted.

Security comes from the config: ``tls_cert``/``tls_key`` serve TLS only,
``tls_client_ca`` adds mutual TLS, and a tokens file or client CA turns on
the authentication interceptor (``auth.py``). Kubelet gRPC probes speak no
TLS, so ``health_port`` opens a second, plaintext server that carries
nothing but grpc.health.v1, sharing the main server's health status.
"""
from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from dial_services.common.auth import interceptor_from_config
from dial_services.common.call_guard import CallGuard
from dial_services.common.config import ConfigError, ServerConfig
from dial_services.common.metrics import ServiceMetrics
from dial_services.common.tls import server_credentials

log = logging.getLogger(__name__)

# The health service name the liveness probe asks for (deploy/k8s): SERVING while the process answers.
LIVENESS = "liveness"
# grpcio-reflection ships only v1alpha; v1 (what grpcurl and Postman ask first) has the same messages and
# field numbers under another package, so the same servicer answers both.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    service_names: tuple[str, ...]
    metrics: ServiceMetrics
    guard: CallGuard
    metrics_port: int | None = None
    health_port: int | None = None
    _on_stop: list[Callable[[], None]] = field(default_factory=list)
    _health_lock: threading.Lock = field(default_factory=threading.Lock)
    # Services that cannot do their work while the server can (a store that refuses writes): NOT_SERVING
    # under their own name only, so that "" and liveness stay as capacity and the process say.
    _impaired: set[str] = field(default_factory=set)

    def set_serving(self, serving: bool) -> None:
        if serving:
            self.guard.accepting.set()
        else:
            self.guard.accepting.clear()
        self.publish_health()

    def set_impaired(self, service_name: str, impaired: bool) -> None:
        with self._health_lock:
            (self._impaired.add if impaired else self._impaired.discard)(service_name)
        self.publish_health()

    def publish_health(self) -> None:
        """SERVING while calls are accepted and a worker is free to take one (and, for a service, while it
        is not impaired)."""
        # Read and set under one lock: a later change always publishes the state it saw last.
        with self._health_lock:
            serving = self.guard.accepting.is_set() and not self.guard.saturated
            status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in ("",) + self.service_names:
                self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING if name in self._impaired
                                else status)

    def on_stop(self, callback: Callable[[], None]) -> None:
        self._on_stop.append(callback)

    def stop(self, grace: float | None = None) -> None:
        self.set_serving(False)
        self.server.stop(grace).wait()
        for callback in self._on_stop:
            callback()


def start_server(config: ServerConfig, metrics: ServiceMetrics,
                 register: Callable[[grpc.Server], tuple[str, ...]],
                 extra_interceptors: tuple = (), serving: bool = True) -> RunningServer:
    """Build, register and start a server; ``register`` returns the full service names."""
    # Inside the call guard, so refused calls are counted by status code too.
    auth = interceptor_from_config(config, _rejection_counter(metrics))
    _check_caller_overrides(auth, config)
    guard = CallGuard(metrics, workers=config.max_workers, stream_idle_timeout_s=config.stream_idle_timeout_seconds,
                      stream_read_timeout_s=config.stream_read_timeout_seconds)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix=metrics.service),
        interceptors=(*extra_interceptors, guard, *((auth,) if auth else ())),
        options=channel_options(config.max_message_bytes),
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
    )
    names = register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    _enable_reflection((*names, health.SERVICE_NAME), server)
    address = f"{config.host}:{config.port}"
    if config.tls_cert is not None:
        port = server.add_secure_port(address, server_credentials(config.tls_cert, config.tls_key,
                                                                  config.tls_client_ca))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise SystemExit(f"cannot listen on {config.host}:{config.port}")
    running = RunningServer(server, port, health_servicer, tuple(names), metrics, guard)
    guard.on_capacity = running.publish_health
    if config.metrics_port:
        metrics.serve(config.metrics_port, config.host)
        running.metrics_port = config.metrics_port
    server.start()
    running.set_serving(serving)
    health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    # Only now: before set_serving the health servicer would report SERVING by default.
    if config.health_port:
        running.health_port = _start_health_server(config, health_servicer, running)
    log.info("%s listening on %s:%d (%s, auth %s)%s", metrics.service, config.host, port,
             "mTLS" if config.tls_client_ca else "TLS" if config.tls_cert else "plaintext",
             "on" if auth else "off", f", metrics on :{config.metrics_port}" if config.metrics_port else "")
    return running


def _enable_reflection(names: tuple[str, ...], server: grpc.Server) -> None:
    servicer = reflection.ReflectionServicer((*names, reflection.SERVICE_NAME, REFLECTION_V1))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)}),))


def _check_caller_overrides(auth, config: ServerConfig) -> None:
    """A tokens file's own per-caller limits obey the same rule as max_calls_per_caller."""
    tokens = getattr(auth, "tokens", None)
    if tokens is None:
        return
    table = tokens.current() if hasattr(tokens, "current") else tokens
    for caller, limits in table.limits.items():
        if limits.max_concurrent_calls is not None and limits.max_concurrent_calls >= config.max_workers:
            raise ConfigError(
                f"auth_tokens_file (DIAL_AUTH_TOKENS_FILE): caller {caller!r} may run {limits.max_concurrent_calls} "
                f"concurrent calls, but that must be below max_workers (--max-workers, DIAL_MAX_WORKERS), which is "
                f"{config.max_workers}")


def _rejection_counter(metrics: ServiceMetrics) -> Callable[[str], None]:
    rejected = metrics.counter("dial_auth_rejections", "calls refused by authentication or per-caller limits",
                               ["service", "reason"])
    return lambda reason: rejected.labels(metrics.service, reason).inc()


def _start_health_server(config: ServerConfig, health_servicer: health.HealthServicer,
                         running: RunningServer) -> int:
    probes = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"),
                         maximum_concurrent_rpcs=16)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probes)
    port = probes.add_insecure_port(f"{config.host}:{config.health_port}")
    if port == 0:
        raise SystemExit(f"cannot listen on {config.host}:{config.health_port} for health checks")
    probes.start()
    running.on_stop(lambda: probes.stop(0))
    return port


def serve_until_signalled(running: RunningServer, grace_seconds: float) -> None:
    stopped = threading.Event()

    def handle(signum, _frame):
        log.info("signal %d: draining in-flight calls for up to %.0f s", signum, grace_seconds)
        running.stop(grace_seconds)
        stopped.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    stopped.wait()
