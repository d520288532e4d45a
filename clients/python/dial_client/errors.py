"""Typed exceptions for gRPC errors, with google.rpc.BadRequest field violations.

Servers reject invalid requests with INVALID_ARGUMENT and a google.rpc.Status
in the ``grpc-status-details-bin`` trailer whose BadRequest detail names each
offending field. grpcio-status (the ``details`` extra) reads that trailer;
without it errors still carry their code and message.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import grpc
from google.protobuf.message import DecodeError


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field: its path (e.g. "image.bands") and what is wrong."""

    field: str
    description: str


class DialError(Exception):
    """An RPC failed. ``code`` is a ``grpc.StatusCode``."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        field_violations: Iterable[FieldViolation] = (),
    ) -> None:
        self.code = code
        self.message = message
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        super().__init__(code, message, self.field_violations)

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        for violation in self.field_violations:
            text += f"\n  {violation.field}: {violation.description}"
        return text


class InvalidArgument(DialError):
    """The request is malformed; see ``field_violations``."""


class NotFound(DialError):
    """The model, session, job or file does not exist (or is not the caller's)."""


class AlreadyExists(DialError):
    """The resource to create exists already."""


class PermissionDenied(DialError):
    """The caller may not do this, e.g. a raster URI outside the server's allowed roots."""


class Unauthenticated(DialError):
    """No valid credentials were sent."""


class ResourceExhausted(DialError):
    """A limit was hit: message size, concurrent sessions, memory."""


class FailedPrecondition(DialError):
    """The resource is not in a state that allows the call, e.g. undo without clicks."""


class Unavailable(DialError):
    """The server cannot be reached or is not ready; retried automatically."""


class DeadlineExceeded(DialError):
    """The call's timeout passed before it completed."""


class Cancelled(DialError):
    """The call was cancelled."""


class Unimplemented(DialError):
    """The server does not offer this method."""


class Internal(DialError):
    """The server failed; its logs have the details."""


_ERROR_TYPES = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: Internal,
}


def error_from_rpc(error: grpc.RpcError) -> DialError:
    """The typed exception for a failed call, field violations decoded when possible."""
    code = _call_attribute(error, "code") or grpc.StatusCode.UNKNOWN
    message = _call_attribute(error, "details") or ""
    violations = field_violations(error) if isinstance(error, grpc.Call) else ()
    return _ERROR_TYPES.get(code, DialError)(code, message, violations)


def field_violations(call: grpc.Call) -> tuple[FieldViolation, ...]:
    """The BadRequest field violations of a failed call's rich status, if it has any."""
    try:
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status
    except ImportError:
        return ()
    try:
        status = rpc_status.from_call(call)
    except (DecodeError, ValueError):
        # Bytes that are no Status, or a Status that contradicts the call's own code and
        # message (a proxy rewrote one of them): its details cannot be trusted either.
        return ()
    violations: list[FieldViolation] = []
    for detail in status.details if status is not None else ():
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            violations.extend(FieldViolation(v.field, v.description) for v in bad_request.field_violations)
    return tuple(violations)


def _call_attribute(error: grpc.RpcError, name: str) -> Optional[object]:
    # Errors raised by stubs are also grpc.Call objects; a bare RpcError is not.
    getter = getattr(error, name, None)
    return getter() if callable(getter) else None
