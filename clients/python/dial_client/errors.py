"""Typed exceptions for gRPC errors, with google.rpc.BadRequest field violations.

Servers reject invalid requests with INVALID_ARGUMENT and a google.rpc.Status
in the ``grpc-status-details-bin`` trailer whose BadRequest detail names each
offending field. Decoding that needs googleapis-common-protos (the ``details``
extra); without it errors still carry their code and message.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import grpc

STATUS_DETAILS_KEY = "grpc-status-details-bin"


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
    violations = decode_field_violations(_call_attribute(error, "trailing_metadata") or ())
    return _ERROR_TYPES.get(code, DialError)(code, message, violations)


def decode_field_violations(trailing_metadata: Sequence[tuple[str, object]]) -> tuple[FieldViolation, ...]:
    """BadRequest field violations from a ``grpc-status-details-bin`` trailer, if any."""
    raw = next((value for key, value in trailing_metadata if key == STATUS_DETAILS_KEY), None)
    if not isinstance(raw, bytes):
        return ()
    try:
        from google.protobuf.message import DecodeError
        from google.rpc import error_details_pb2, status_pb2
    except ImportError:
        return ()
    try:
        status = status_pb2.Status.FromString(raw)
    except DecodeError:
        return ()
    violations: list[FieldViolation] = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            violations.extend(FieldViolation(v.field, v.description) for v in bad_request.field_violations)
    return tuple(violations)


def _call_attribute(error: grpc.RpcError, name: str) -> Optional[object]:
    # Errors raised by stubs are also grpc.Call objects; a bare RpcError is not.
    getter = getattr(error, name, None)
    return getter() if callable(getter) else None
