"""Who is calling: bearer tokens or mTLS identities, in one interceptor for every service.

A caller proves who it is with ``authorization: Bearer <token>`` (checked
against a tokens file that holds only SHA-256 digests, so a leaked file or
backup reveals no usable secret) or, on a mutual-TLS server, with its client
certificate, whose subject CN is the identity. The identity is what session
ownership uses: handlers read it with :func:`caller_identity`.

The interceptor also bounds what one caller can take from a server shared
by many: concurrent calls and request bytes per message, each per caller,
so one client's burst cannot starve the others (RESOURCE_EXHAUSTED).
Request bytes are parsed only after the caller is authenticated, so an
anonymous peer never reaches the protobuf parser.

grpc.health.v1 needs no credentials: Kubernetes probes carry none.
Tokens never reach logs, metric labels or error messages.

Tokens file, one caller per line (``#`` starts a comment)::

    alice:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

or JSON, which may also set per-caller limits::

    {"callers": {"alice": {"sha256": "9f86...", "max_concurrent_calls": 4,
                           "max_request_bytes": 67108864}}}

``python -m dial_services.common.auth alice`` reads a token on stdin and
prints the line for it.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

import grpc

from dial_services.common.config import ConfigError, ServerConfig
from dial_services.common.tls import peer_common_name

log = logging.getLogger(__name__)

# The key ``dial_client`` sends its caller name under (transport.call_metadata).
CALLER_METADATA_KEY = "caller"
ANONYMOUS = "anonymous"

_PUBLIC_PREFIXES = ("/grpc.health.v1.Health/",)
# Keyed by the call's ServicerContext rather than a contextvar: a handler may
# hand work to another thread, and a streaming handler's generator may be
# resumed or closed outside the context it started in.
_identities: dict[int, str] = {}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokensFileError(ValueError):
    """The tokens file is malformed; the message names the line, never its content."""


@dataclass(frozen=True)
class CallerLimits:
    max_concurrent_calls: int | None = None
    max_request_bytes: int | None = None


@dataclass(frozen=True)
class TokenTable:
    """SHA-256 token digests -> caller id, plus per-caller limit overrides."""

    by_digest: Mapping[str, str]
    limits: Mapping[str, CallerLimits] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path) -> "TokenTable":
        text = Path(path).read_text(encoding="utf-8")
        if text.lstrip().startswith("{"):
            return cls._from_json(text, path)
        by_digest: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            caller, sep, digest = line.rpartition(":")
            cls._add(by_digest, caller.strip(), digest.strip().lower(), f"{path} line {number}", bool(sep))
        return cls(by_digest)

    @classmethod
    def _from_json(cls, text: str, path: Path) -> "TokenTable":
        try:
            callers = json.loads(text)["callers"]
        except (ValueError, KeyError, TypeError):
            raise TokensFileError(f"{path}: expected a JSON object with a 'callers' mapping") from None
        by_digest: dict[str, str] = {}
        limits: dict[str, CallerLimits] = {}
        for caller, entry in callers.items():
            where = f"{path} caller {caller!r}"
            if not isinstance(entry, dict):
                raise TokensFileError(f"{where}: expected an object with 'sha256'")
            cls._add(by_digest, caller, str(entry.get("sha256", "")).lower(), where, True)
            try:
                limits[caller] = CallerLimits(
                    _positive_or_none(entry.get("max_concurrent_calls")), _positive_or_none(entry.get("max_request_bytes")))
            except (TypeError, ValueError):
                raise TokensFileError(f"{where}: limits must be positive integers") from None
        return cls(by_digest, limits)

    @staticmethod
    def _add(by_digest: dict[str, str], caller: str, digest: str, where: str, has_separator: bool) -> None:
        if not has_separator or not caller:
            raise TokensFileError(f"{where}: expected 'caller:sha256hex'")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            # Probably a token pasted in clear; the message must not repeat it.
            raise TokensFileError(f"{where}: the secret must be a SHA-256 hex digest, not a token")
        if digest in by_digest:
            raise TokensFileError(f"{where}: the same token is listed twice")
        by_digest[digest] = caller

    def caller_for(self, token: str) -> str | None:
        digest = hash_token(token)
        found = None
        # Compare against every entry in constant time, so timing reveals
        # neither whether nor where a digest matched.
        for known, caller in self.by_digest.items():
            if hmac.compare_digest(known, digest):
                found = caller
        return found


class TokensFile:
    """A tokens file that is re-read when it changes, so tokens rotate without a restart.

    Kubernetes updates a mounted Secret in place; the file's modification
    time is checked at most every ``check_every_s``. A file that fails to
    parse leaves the previous table in force.
    """

    def __init__(self, path: Path, check_every_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.check_every_s = check_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = self.path.stat().st_mtime_ns
        self._table = TokenTable.from_file(self.path)
        self._checked = clock()

    def current(self) -> TokenTable:
        now = self._clock()
        if now - self._checked < self.check_every_s:
            return self._table
        with self._lock:
            self._checked = now
            try:
                stamp = self.path.stat().st_mtime_ns
                if stamp != self._stamp:
                    self._table = TokenTable.from_file(self.path)
                    self._stamp = stamp
                    log.info("tokens reloaded from %s: %d callers", self.path, len(set(self._table.by_digest.values())))
            except (OSError, ValueError) as error:
                log.warning("keeping the previous tokens: %s", error)
        return self._table


def _positive_or_none(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(value)
    return int(value)


def caller_identity(context: grpc.ServicerContext) -> str:
    """The caller this request acts for: the authenticated identity when auth is on.

    Without authentication the client's own ``caller`` metadata is taken at
    its word (fine for a single-user or trusted deployment), and callers
    that send none share the ``anonymous`` identity.
    """
    authenticated = _identities.get(id(context))
    if authenticated is not None:
        return authenticated
    for key, value in context.invocation_metadata() or ():
        if key == CALLER_METADATA_KEY and value:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return ANONYMOUS


class _Raw:
    """Request bytes held back until the caller is known and its size limit checked."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data


class _CallerSlots:
    """Per-caller counts of calls in flight; acquire fails instead of waiting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}

    def acquire(self, caller: str, limit: int) -> bool:
        with self._lock:
            count = self._in_flight.get(caller, 0)
            if count >= limit:
                return False
            self._in_flight[caller] = count + 1
            return True

    def release(self, caller: str) -> None:
        with self._lock:
            count = self._in_flight.get(caller, 1) - 1
            if count:
                self._in_flight[caller] = count
            else:
                self._in_flight.pop(caller, None)


class AuthInterceptor(grpc.ServerInterceptor):
    """Authenticates every call except health checks and enforces per-caller limits.

    ``tokens`` enables bearer tokens; ``mtls`` takes the verified client
    certificate's CN as the identity when no token is sent. With both, a
    presented token must be valid, and a call with neither is refused.
    """

    def __init__(self, tokens: TokenTable | TokensFile | None = None, *, mtls: bool = False,
                 max_concurrent_calls: int = 8, max_request_bytes: int = 64 * 1024 * 1024,
                 on_rejected: Callable[[str], None] | None = None):
        if tokens is None and not mtls:
            raise ValueError("authentication needs a tokens table, mutual TLS, or both")
        self.tokens = tokens
        self.mtls = mtls
        self.max_concurrent_calls = max_concurrent_calls
        self.max_request_bytes = max_request_bytes
        self._slots = _CallerSlots()
        self._on_rejected = on_rejected or (lambda reason: None)

    def _limits(self, caller: str) -> tuple[int, int]:
        override = self._table().limits.get(caller) if self.tokens else None
        return ((override and override.max_concurrent_calls) or self.max_concurrent_calls,
                (override and override.max_request_bytes) or self.max_request_bytes)

    def _table(self) -> TokenTable:
        return self.tokens.current() if isinstance(self.tokens, TokensFile) else self.tokens

    def authenticate(self, context: grpc.ServicerContext) -> str:
        """The caller's identity, or abort with UNAUTHENTICATED."""
        bearer = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                bearer = value if isinstance(value, str) else value.decode("latin-1")
                break
        if bearer is not None:
            scheme, _, token = bearer.partition(" ")
            caller = None
            if self.tokens is not None and scheme.lower() == "bearer" and token.strip():
                caller = self._table().caller_for(token.strip())
            if caller is None:
                self._on_rejected("invalid_token")
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid credentials")
            return caller
        if self.mtls:
            name = peer_common_name(context)
            if name:
                return name
        self._on_rejected("missing_credentials")
        accepted = (["'authorization: Bearer <token>'"] if self.tokens is not None else []) \
            + (["a client certificate"] if self.mtls else [])
        context.abort(grpc.StatusCode.UNAUTHENTICATED, f"credentials required: send {' or '.join(accepted)}")
        raise AssertionError("unreachable: abort raises")

    def _admit(self, context) -> tuple[str, int]:
        caller = self.authenticate(context)
        max_calls, max_bytes = self._limits(caller)
        if not self._slots.acquire(caller, max_calls):
            self._on_rejected("caller_concurrency")
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"too many concurrent calls for this caller (limit {max_calls}); retry later")
        return caller, max_bytes

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(_PUBLIC_PREFIXES):
            return handler
        guard = self
        parse = handler.request_deserializer or (lambda data: data)

        def unpack(raw, max_bytes: int, context):
            if len(raw.data) > max_bytes:
                guard._on_rejected("caller_request_bytes")
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"request message of {len(raw.data)} bytes exceeds this caller's limit of {max_bytes}")
            try:
                return parse(raw.data)
            except Exception:  # noqa: BLE001 - any parser failure is the client's malformed message
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request message could not be parsed")

        def messages(raws, max_bytes: int, context) -> Iterator:
            for raw in raws:
                yield unpack(raw, max_bytes, context)

        def unary_request(behaviour, streaming_response: bool):
            def call(raw, context):
                caller, max_bytes = guard._admit(context)
                _identities[id(context)] = caller
                try:
                    request = unpack(raw, max_bytes, context)
                    return behaviour(request, context)
                finally:
                    _identities.pop(id(context), None)
                    guard._slots.release(caller)

            def stream(raw, context):
                caller, max_bytes = guard._admit(context)
                _identities[id(context)] = caller
                try:
                    request = unpack(raw, max_bytes, context)
                    yield from behaviour(request, context)
                finally:
                    _identities.pop(id(context), None)
                    guard._slots.release(caller)
            return stream if streaming_response else call

        def stream_request(behaviour, streaming_response: bool):
            def call(raws, context):
                caller, max_bytes = guard._admit(context)
                _identities[id(context)] = caller
                try:
                    return behaviour(messages(raws, max_bytes, context), context)
                finally:
                    _identities.pop(id(context), None)
                    guard._slots.release(caller)

            def stream(raws, context):
                caller, max_bytes = guard._admit(context)
                _identities[id(context)] = caller
                try:
                    yield from behaviour(messages(raws, max_bytes, context), context)
                finally:
                    _identities.pop(id(context), None)
                    guard._slots.release(caller)
            return stream if streaming_response else call

        serialize = handler.response_serializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary_request(handler.unary_unary, False), _Raw, serialize)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(unary_request(handler.unary_stream, True), _Raw, serialize)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(stream_request(handler.stream_unary, False), _Raw, serialize)
        return grpc.stream_stream_rpc_method_handler(stream_request(handler.stream_stream, True), _Raw, serialize)


def interceptor_from_config(config: ServerConfig, on_rejected: Callable[[str], None] | None = None) -> AuthInterceptor | None:
    """The interceptor a ServerConfig asks for: on when a tokens file or a client CA is set."""
    if not config.auth_enabled:
        return None
    tokens_file, mtls = config.auth_tokens_file, config.tls_client_ca is not None
    try:
        tokens = TokensFile(tokens_file) if tokens_file is not None else None
    except TokensFileError as error:
        raise ConfigError(f"auth_tokens_file (DIAL_AUTH_TOKENS_FILE): {error}") from None
    return AuthInterceptor(tokens, mtls=mtls, max_concurrent_calls=config.max_calls_per_caller,
                           max_request_bytes=config.max_request_bytes_per_caller or config.max_message_bytes,
                           on_rejected=on_rejected)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0] or ":" in args[0]:
        print("usage: python -m dial_services.common.auth CALLER < token", file=sys.stderr)
        return 2
    token = sys.stdin.readline().rstrip("\r\n")
    if not token:
        print("no token on stdin", file=sys.stderr)
        return 2
    print(f"{args[0]}:{hash_token(token)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
