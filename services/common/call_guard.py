"""A server interceptor around every RPC: errors, metrics and request ids.

It is where a handler's exception becomes the call's status, by the one
table in :mod:`dial_services.common.errors`: ApiError keeps its code and
field violations, each kind of :mod:`dial.errors` has its code, and anything
else is INTERNAL with an id the operator can find in the log. No stack trace
ever reaches a client.

While the server is not SERVING (loading models at start-up, or draining
after SIGTERM) new calls get UNAVAILABLE: the one code clients retry, so a
call that reaches a replica too early or too late goes round again instead of
failing with NOT_FOUND for a model that is still loading.

A handler holds one of the server's worker threads for as long as it runs,
including while it waits for a client stream's next message. The guard reads
client streams on a thread of their own and ends a stream that stays silent
for ``stream_idle_timeout_seconds`` (or takes longer than
``stream_read_timeout_seconds`` in all) with DEADLINE_EXCEEDED, so a caller
that opens streams and sends nothing cannot keep the workers. It also counts
the workers in use and reports when every one is taken (``on_capacity``), so
the health the probes read can say NOT_SERVING while no call could start.
"""
from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Callable, Iterator

import grpc

from dial.errors import DeadlineExceeded
from dial_services.common.errors import status_for
from dial_services.common.metrics import ServiceMetrics


class DeadlineExpired(DeadlineExceeded):
    """A long call noticed that its client's deadline has passed."""

    def __init__(self, message: str = "deadline exceeded before the work finished"):
        super().__init__(message)


class StreamTimedOut(DeadlineExceeded):
    """A client stream stayed silent too long, or took too long in all."""


class TimedRequests:
    """A client's request stream, read on its own thread so that waiting for it can time out.

    gRPC's request iterator blocks its reader until the next message or the
    end of the call, with no timeout of its own. Reading here hands each
    message over as the handler asks for it (one at a time, so flow control
    still holds the client back), and the handler's thread waits with a
    timeout. After a timeout the handler ends the call, which wakes the
    reading thread; ``close`` lets it finish.
    """

    def __init__(self, requests: Iterator, idle_timeout_s: float, read_timeout_s: float, name: str):
        self._requests = requests
        self._idle_s = idle_timeout_s
        self._read_s = read_timeout_s
        self._read_by = time.monotonic() + read_timeout_s
        self._name = name
        self._asked = threading.Semaphore(0)
        self._answers: queue.SimpleQueue = queue.SimpleQueue()
        self._reader: threading.Thread | None = None
        self._closed = False
        self._ended = False

    def __iter__(self) -> "TimedRequests":
        return self

    def __next__(self):
        if self._ended:
            raise StopIteration
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, name=self._name, daemon=True)
            self._reader.start()
        self._asked.release()
        left = self._read_by - time.monotonic()
        try:
            kind, value = self._answers.get(timeout=max(0.0, min(self._idle_s, left)))
        except queue.Empty:
            self._ended = True
            if left <= self._idle_s:
                raise StreamTimedOut(f"the request stream took longer than the {self._read_s:g} s this server "
                                     "allows to send it; send larger tiles, or a raster reference") from None
            raise StreamTimedOut(f"no request message arrived for {self._idle_s:g} s, so the server ended the "
                                 "stream; send the stream's messages without long pauses") from None
        if kind == "message":
            return value
        self._ended = True
        if kind == "end":
            raise StopIteration
        raise value

    def _read(self) -> None:
        while True:
            self._asked.acquire()
            if self._closed:
                return
            try:
                message = next(self._requests)
            except StopIteration:
                self._answers.put(("end", None))
                return
            except BaseException as error:  # noqa: BLE001 - handed to the handler's thread, which raises it
                self._answers.put(("error", error))
                return
            self._answers.put(("message", message))

    def close(self) -> None:
        self._closed = True
        self._asked.release()


def _abort(context: grpc.ServicerContext, error: Exception) -> None:
    code, message, status = status_for(error)
    if status is not None:
        context.abort_with_status(status)
    context.abort(code, message)


class CallGuard(grpc.ServerInterceptor):
    def __init__(self, metrics: ServiceMetrics, *, workers: int | None = None,
                 stream_idle_timeout_s: float | None = None, stream_read_timeout_s: float | None = None,
                 on_capacity: Callable[[], None] | None = None):
        self.metrics = metrics
        self.accepting = threading.Event()
        self.workers = workers
        self.stream_idle_timeout_s = stream_idle_timeout_s
        self.stream_read_timeout_s = stream_read_timeout_s
        self.on_capacity = on_capacity
        self._busy = 0
        self._busy_lock = threading.Lock()
        self.streams_timed_out = metrics.counter(
            "dial_client_streams_timed_out", "client streams ended for silence or for taking too long",
            ["service", "method"])

    @property
    def saturated(self) -> bool:
        """True while every worker thread runs a call, so a new call would have to wait."""
        return self.workers is not None and self._busy >= self.workers

    def _enter(self) -> None:
        with self._busy_lock:
            self._busy += 1
            crossed = self.workers is not None and self._busy == self.workers
        if crossed and self.on_capacity:
            self.on_capacity()

    def _leave(self) -> None:
        with self._busy_lock:
            crossed = self.workers is not None and self._busy == self.workers
            self._busy -= 1
        if crossed and self.on_capacity:
            self.on_capacity()

    def _timed(self, requests, method: str):
        if self.stream_idle_timeout_s is None:
            return requests
        return TimedRequests(requests, self.stream_idle_timeout_s, self.stream_read_timeout_s or float("inf"),
                             f"{self.metrics.service}-{method}-reader")

    def _observe(self, method: str, grpc_type: str, context, started: float, failed: BaseException | None) -> None:
        code = context.code() if hasattr(context, "code") else None
        if code is None:
            code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        self.metrics.requests.labels(self.metrics.service, method, grpc_type, name).inc()
        self.metrics.latency.labels(self.metrics.service, method, grpc_type, name).observe(
            time.perf_counter() - started)

    def _count_timeout(self, method: str, error: Exception) -> None:
        if isinstance(error, StreamTimedOut):
            self.streams_timed_out.labels(self.metrics.service, method).inc()

    def _refuse_unless_accepting(self, context) -> None:
        if not self.accepting.is_set():
            context.abort(grpc.StatusCode.UNAVAILABLE, f"the {self.metrics.service} is starting or shutting down; "
                          "retry shortly")

    @contextlib.contextmanager
    def _guarded(self, method: str, grpc_type: str, request, context, stream_request: bool):
        """One call, unary or streaming: counted while it runs, refused unless the server accepts calls,
        its client stream timed, and its failure turned into its status."""
        started, failed = time.perf_counter(), None
        self._enter()
        self.metrics.in_flight.labels(self.metrics.service).inc()
        requests = self._timed(request, method) if stream_request else request
        try:
            self._refuse_unless_accepting(context)
            yield requests
        except Exception as error:  # noqa: BLE001 - translated to a status here, once
            failed = error
            self._count_timeout(method, error)
            if _is_abort(context):
                raise
            _abort(context, error)
        finally:
            if isinstance(requests, TimedRequests):
                requests.close()
            self.metrics.in_flight.labels(self.metrics.service).dec()
            self._leave()
            self._observe(method, grpc_type, context, started, failed)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler_call_details.method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        guard = self

        grpc_type = ("unary" if handler.unary_unary else "server_stream" if handler.unary_stream
                     else "client_stream" if handler.stream_unary else "bidi_stream")

        def unary(behaviour, stream_request: bool = False):
            def wrapped(request, context):
                with guard._guarded(method, grpc_type, request, context, stream_request) as requests:
                    return behaviour(requests, context)
            return wrapped

        def streaming(behaviour, stream_request: bool = False):
            def wrapped(request, context):
                with guard._guarded(method, grpc_type, request, context, stream_request) as requests:
                    yield from behaviour(requests, context)
            return wrapped

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), handler.request_deserializer,
                                                       handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream),
                                                        handler.request_deserializer, handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary, stream_request=True),
                                                        handler.request_deserializer, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream, stream_request=True),
                                                     handler.request_deserializer, handler.response_serializer)


def _is_abort(context) -> bool:
    """True when the handler already aborted (context.abort raises after setting the code)."""
    code = context.code() if hasattr(context, "code") else None
    return code is not None and code != grpc.StatusCode.OK
