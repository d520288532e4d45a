"""How calls reach a DIAL server: channel, credentials, metadata, deadlines, readiness and retries.

Shared by every service client (each is a :class:`ServiceClient`), so all
of them open channels, size messages, authenticate, wait and retry the same way.

Calls are made with gRPC's ``wait_for_ready``: one made while the server is
still starting (or restarting) waits for the channel to connect, within its
deadline, instead of failing UNAVAILABLE at once. The request is not sent
before the channel is ready, so this is safe for calls that create
something too. The retry loop here only handles an UNAVAILABLE the server
itself answers (it is draining, or a stream broke mid-call), which gRPC's
transparent retries do not cover.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, TypeVar, Union

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ._version import __version__
from .errors import DeadlineExceeded, error_from_rpc

# gRPC's 4 MB default is too small for imagery: a 1024 x 1024 x 9 uint16 tile
# is 18.9 MB. Servers set the same limit.
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024

# Only UNAVAILABLE means the request never reached a working server; any
# other status is the server's answer and repeating the call would not change it.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})

MAX_RECONNECT_BACKOFF_MS = 2000

# What ``is_server_ready`` waits at most when not told: a readiness probe should answer fast.
READY_CHECK_SECONDS = 2.0

T = TypeVar("T")
ClientT = TypeVar("ClientT", bound="ServiceClient")


@dataclass(frozen=True)
class TlsConfig:
    """PEM bytes for a TLS channel; without ``root_certificates`` the system roots apply.

    ``certificate_chain`` and ``private_key`` together enable mutual TLS.
    """

    root_certificates: Optional[bytes] = None
    certificate_chain: Optional[bytes] = None
    private_key: Optional[bytes] = None

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("mutual TLS needs both certificate_chain and private_key")

    @classmethod
    def from_files(
        cls,
        root_cert: Optional[Union[str, Path]] = None,
        client_cert: Optional[Union[str, Path]] = None,
        client_key: Optional[Union[str, Path]] = None,
    ) -> "TlsConfig":
        def read(path: Optional[Union[str, Path]]) -> Optional[bytes]:
            return None if path is None else Path(path).read_bytes()

        return cls(read(root_cert), read(client_cert), read(client_key))

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, for UNAVAILABLE only.

    The n-th retry waits ``min(max_backoff_seconds, initial_backoff_seconds *
    backoff_multiplier ** n)``, scaled by a random factor in ``1 +- jitter`` so
    that many clients losing the same server do not return in lockstep.
    """

    max_attempts: int = 4
    initial_backoff_seconds: float = 0.2
    max_backoff_seconds: float = 5.0
    backoff_multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must lie in [0, 1], got {self.jitter}")

    @classmethod
    def with_retries(cls, retries: int) -> "RetryPolicy":
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        return cls(max_attempts=retries + 1)

    def backoff_seconds(self, retry_index: int, rng: random.Random) -> float:
        base = min(self.max_backoff_seconds, self.initial_backoff_seconds * self.backoff_multiplier**retry_index)
        return base * rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)


def call_with_retry(
    attempt: Callable[[Optional[float]], T],
    policy: RetryPolicy,
    timeout_seconds: Optional[float],
    may_retry: Callable[[], bool] = lambda: True,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Optional[random.Random] = None,
) -> T:
    """Run ``attempt(remaining_seconds)`` until it succeeds or fails for good.

    ``timeout_seconds`` bounds the whole call, retries and backoff included;
    each attempt gets what is left of it. ``may_retry`` returning False keeps a
    call that is not idempotent from being sent twice. Raises the
    last ``grpc.RpcError``.
    """
    rng = rng or random.Random()
    deadline = None if timeout_seconds is None else clock() + timeout_seconds
    for retry_index in range(policy.max_attempts):
        remaining = None if deadline is None else max(deadline - clock(), 0.0)
        try:
            return attempt(remaining)
        except grpc.RpcError as error:
            if retry_index + 1 >= policy.max_attempts or error.code() not in RETRYABLE_CODES or not may_retry():
                raise
            delay = policy.backoff_seconds(retry_index, rng)
            if deadline is not None and clock() + delay >= deadline:
                raise
            sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


CallOptions = dict[str, Any]


class Connection:
    """A channel plus the metadata, deadline, wait-for-ready and retry policy applied to every call."""

    def __init__(
        self,
        target: str,
        *,
        timeout: Optional[float],
        retries: Union[int, RetryPolicy],
        token: Optional[str] = None,
        tls: Optional[TlsConfig] = None,
        caller: Optional[str] = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        wait_for_ready: bool = True,
    ) -> None:
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self.retry_policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy.with_retries(retries)
        self.metadata = call_metadata(token=token, caller=caller)
        self.channel = open_channel(target, tls=tls, max_message_bytes=max_message_bytes)

    def call(
        self,
        attempt: Callable[[CallOptions], T],
        timeout: Optional[float] = None,
        may_retry: Callable[[], bool] = lambda: True,
    ) -> T:
        """Run ``attempt(options)`` with retries; raise a DialError on failure.

        ``options`` are the keyword arguments of a stub call (``timeout``,
        ``metadata``, ``wait_for_ready``), so an attempt is
        ``lambda options: stub.Method(request, **options)``. ``timeout``
        overrides the connection's default for this call.
        """
        try:
            return call_with_retry(
                lambda remaining: attempt(self.options(remaining)),
                self.retry_policy,
                self.timeout if timeout is None else timeout,
                may_retry,
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error

    def options(self, timeout: Optional[float]) -> CallOptions:
        return {"timeout": timeout, "metadata": self.metadata, "wait_for_ready": self.wait_for_ready}

    def close(self) -> None:
        self.channel.close()


class ServiceClient:
    """A client of one dial.v1 service: a stub on a :class:`Connection`; a context manager that closes it.

    Subclasses name their generated stub class in ``STUB``, their service's
    full name in ``SERVICE`` (what its health status is published under) and
    give their own default ``timeout``; everything else about reaching the
    server is here.
    """

    STUB: ClassVar[Callable[[grpc.Channel], Any]]
    SERVICE: ClassVar[str]

    def __init__(
        self,
        target: str,
        *,
        timeout: Optional[float],
        retries: Union[int, RetryPolicy] = 3,
        token: Optional[str] = None,
        tls: Optional[TlsConfig] = None,
        caller: Optional[str] = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        wait_for_ready: bool = True,
    ) -> None:
        self._connection = Connection(
            target,
            timeout=timeout,
            retries=retries,
            token=token,
            tls=tls,
            caller=caller,
            max_message_bytes=max_message_bytes,
            wait_for_ready=wait_for_ready,
        )
        self._stub = type(self).STUB(self._connection.channel)
        self._health = health_pb2_grpc.HealthStub(self._connection.channel)

    def __enter__(self: ClientT) -> ClientT:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._connection.close()

    def _call(self, method: str, request: Any, timeout: Optional[float], idempotent: bool = True) -> Any:
        """One unary call of the stub's ``method``; never retried when not ``idempotent``, so a
        retry cannot apply a change twice."""
        stub_method = getattr(self._stub, method)
        return self._connection.call(
            lambda options: stub_method(request, **options),
            timeout,
            may_retry=lambda: idempotent,
        )

    def is_server_ready(self, *, timeout: Optional[float] = READY_CHECK_SECONDS) -> bool:
        """Whether the service answers and its health is SERVING; False while it cannot be reached.

        Does not wait for a server that is down; :meth:`wait_until_ready` does.
        """
        return self._serving(timeout, wait_for_ready=False)

    def wait_until_ready(self, timeout: Optional[float] = None, *, poll_seconds: float = 0.2) -> None:
        """Block until the service is SERVING; DeadlineExceeded after ``timeout`` seconds (None: the
        client's default timeout)."""
        timeout = self._connection.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED,
                                       f"{type(self).SERVICE} was not ready within {timeout} s")
            # wait_for_ready: the check itself waits for the channel to connect, so a server
            # that comes up is seen at once; polling only covers NOT_SERVING (models loading).
            if self._serving(remaining, wait_for_ready=True):
                return
            time.sleep(poll_seconds if remaining is None else max(0.0, min(poll_seconds, remaining)))

    def _serving(self, timeout: Optional[float], *, wait_for_ready: bool) -> bool:
        request = health_pb2.HealthCheckRequest(service=type(self).SERVICE)
        try:
            reply = self._health.Check(request, timeout=timeout, metadata=self._connection.metadata,
                                       wait_for_ready=wait_for_ready)
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return False
            raise error_from_rpc(error) from error
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def open_channel(
    target: str,
    *,
    tls: Optional[TlsConfig] = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> grpc.Channel:
    """A channel to ``target`` ("host:port"), TLS when ``tls`` is given."""
    options = channel_options(max_message_bytes)
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, tls.credentials(), options=options)


def channel_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    """The options of every client channel, blocking or asyncio."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.primary_user_agent", f"dial-client/{__version__}"),
        # gRPC's reconnect backoff grows to 120 s by default; a call waiting for a server that is
        # starting would then sit out most of a minute after it came up.
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ]


def call_metadata(token: Optional[str] = None, caller: Optional[str] = None) -> tuple[tuple[str, str], ...]:
    """Request metadata: ``authorization: Bearer <token>`` and the ``caller`` name, when given.

    The token travels as plain metadata, so it is readable on an insecure
    channel; use TLS wherever the network is not trusted.
    """
    metadata: list[tuple[str, str]] = []
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    if caller:
        metadata.append(("caller", caller))
    return tuple(metadata)
