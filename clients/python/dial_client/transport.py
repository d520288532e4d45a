"""How calls reach a DIAL server: channel, credentials, metadata, deadlines and retries.

Shared by every service client (each is a :class:`ServiceClient`), so all
of them open channels, size messages, authenticate and retry the same way.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, TypeVar, Union

import grpc

from ._version import __version__
from .errors import error_from_rpc

# gRPC's 4 MB default is too small for imagery: a 1024 x 1024 x 9 uint16 tile
# is 18.9 MB. Servers set the same limit.
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024

# Only UNAVAILABLE means the request never reached a working server; any
# other status is the server's answer and repeating the call would not change it.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})

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


class Connection:
    """A channel plus the metadata, deadline and retry policy applied to every call."""

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
    ) -> None:
        self.timeout = timeout
        self.retry_policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy.with_retries(retries)
        self.metadata = call_metadata(token=token, caller=caller)
        self.channel = open_channel(target, tls=tls, max_message_bytes=max_message_bytes)

    def call(
        self,
        attempt: Callable[[Optional[float], tuple[tuple[str, str], ...]], T],
        timeout: Optional[float] = None,
        may_retry: Callable[[], bool] = lambda: True,
    ) -> T:
        """Run ``attempt(timeout_seconds, metadata)`` with retries; raise a DialError on failure.

        ``timeout`` overrides the connection's default for this call.
        """
        try:
            return call_with_retry(
                lambda remaining: attempt(remaining, self.metadata),
                self.retry_policy,
                self.timeout if timeout is None else timeout,
                may_retry,
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error

    def close(self) -> None:
        self.channel.close()


class ServiceClient:
    """A client of one dial.v1 service: a stub on a :class:`Connection`; a context manager that closes it.

    Subclasses name their generated stub class in ``STUB`` and give their own
    default ``timeout``; everything else about reaching the server is here.
    """

    STUB: ClassVar[Callable[[grpc.Channel], Any]]

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
    ) -> None:
        self._connection = Connection(
            target,
            timeout=timeout,
            retries=retries,
            token=token,
            tls=tls,
            caller=caller,
            max_message_bytes=max_message_bytes,
        )
        self._stub = type(self).STUB(self._connection.channel)

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
            lambda deadline, metadata: stub_method(request, timeout=deadline, metadata=metadata),
            timeout,
            may_retry=lambda: idempotent,
        )


def open_channel(
    target: str,
    *,
    tls: Optional[TlsConfig] = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> grpc.Channel:
    """A channel to ``target`` ("host:port"), TLS when ``tls`` is given."""
    options = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.primary_user_agent", f"dial-client/{__version__}"),
    ]
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, tls.credentials(), options=options)


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
