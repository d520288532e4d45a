"""A server interceptor around every RPC: errors, metrics and request ids.

It is the single place where exceptions become gRPC statuses: ApiError keeps
its code and field violations, a core ModelNotFound is NOT_FOUND, a deadline
that ran out is DEADLINE_EXCEEDED, and anything else is INTERNAL with an id
the operator can find in the log. No stack trace ever reaches a client.

While the server is not SERVING (loading models at start-up, or draining
after SIGTERM) new calls get UNAVAILABLE: the one code clients retry, so a
call that reaches a replica too early or too late goes round again instead of
failing with NOT_FOUND for a model that is still loading.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid

import grpc

from dial.model.manifest import ManifestError
from dial.model.repository import ModelNotFound
from dial_services.common.errors import ApiError
from dial_services.common.metrics import ServiceMetrics

log = logging.getLogger(__name__)


class DeadlineExpired(Exception):
    """A long call noticed that its client's deadline has passed."""


def _status_for(error: Exception) -> tuple[grpc.StatusCode, str, grpc.Status | None]:
    if isinstance(error, ApiError):
        return error.code, error.message, error.to_status()
    if isinstance(error, ModelNotFound):
        return grpc.StatusCode.NOT_FOUND, str(error), None
    if isinstance(error, ManifestError):
        return grpc.StatusCode.FAILED_PRECONDITION, f"model unusable: {error}", None
    if isinstance(error, DeadlineExpired):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before the work finished", None
    if isinstance(error, MemoryError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, "the server ran out of memory for this request", None
    request_id = uuid.uuid4().hex[:12]
    log.exception("internal error, request id %s", request_id)
    return grpc.StatusCode.INTERNAL, f"internal error (request id {request_id})", None


def _abort(context: grpc.ServicerContext, error: Exception) -> None:
    code, message, status = _status_for(error)
    if status is not None:
        context.abort_with_status(status)
    context.abort(code, message)


class CallGuard(grpc.ServerInterceptor):
    def __init__(self, metrics: ServiceMetrics):
        self.metrics = metrics
        self.accepting = threading.Event()

    def _observe(self, method: str, context, started: float, failed: BaseException | None) -> None:
        code = context.code() if hasattr(context, "code") else None
        if code is None:
            code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        self.metrics.requests.labels(self.metrics.service, method, name).inc()
        self.metrics.latency.labels(self.metrics.service, method).observe(time.perf_counter() - started)

    def _refuse_unless_accepting(self, context) -> None:
        if not self.accepting.is_set():
            context.abort(grpc.StatusCode.UNAVAILABLE, f"the {self.metrics.service} is starting or shutting down; "
                          "retry shortly")

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler_call_details.method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        guard = self

        def unary(behaviour):
            def wrapped(request, context):
                started, failed = time.perf_counter(), None
                guard.metrics.in_flight.labels(guard.metrics.service).inc()
                try:
                    guard._refuse_unless_accepting(context)
                    return behaviour(request, context)
                except Exception as error:  # noqa: BLE001 - translated to a status here, once
                    failed = error
                    if _is_abort(context):
                        raise
                    _abort(context, error)
                finally:
                    guard.metrics.in_flight.labels(guard.metrics.service).dec()
                    guard._observe(method, context, started, failed)
            return wrapped

        def streaming(behaviour):
            def wrapped(request, context):
                started, failed = time.perf_counter(), None
                guard.metrics.in_flight.labels(guard.metrics.service).inc()
                try:
                    guard._refuse_unless_accepting(context)
                    yield from behaviour(request, context)
                except Exception as error:  # noqa: BLE001
                    failed = error
                    if _is_abort(context):
                        raise
                    _abort(context, error)
                finally:
                    guard.metrics.in_flight.labels(guard.metrics.service).dec()
                    guard._observe(method, context, started, failed)
            return wrapped

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), handler.request_deserializer,
                                                       handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream),
                                                        handler.request_deserializer, handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), handler.request_deserializer,
                                                        handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream),
                                                     handler.request_deserializer, handler.response_serializer)


def _is_abort(context) -> bool:
    """True when the handler already aborted (context.abort raises after setting the code)."""
    code = context.code() if hasattr(context, "code") else None
    return code is not None and code != grpc.StatusCode.OK
