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
        hint: str = "",
    ) -> None:
        self.code = code
        self.message = message
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.hint = hint
        super().__init__(code, message, self.field_violations)

    def __str__(self) -> str:
        # Servers summarise the violations in the message too ("invalid request: a: ...; b: ...");
        # listed one a line below, they are not repeated in the first line.
        listed = [f"{v.field}: {v.description}" for v in self.field_violations]
        head = self.message
        if listed and all(item in head for item in listed):
            head = head.split(listed[0])[0].rstrip(" :;") or self.code.name.lower().replace("_", " ")
        text = f"{self.code.name}: {head}"
        for item in listed:
            text += f"\n  {item}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def with_hint(self, hint: str) -> "DialError":
        """The same error, of the same type, with ``hint`` on what the caller may have meant."""
        return type(self)(self.code, self.message, self.field_violations, hint)


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


# An image whose first axis is at most this many and smaller than the other two is taken
# for (bands, height, width): no sensor DIAL serves has more bands, and no image is that thin.
MAX_BANDS_FIRST = 16


def image_layout_hint(shape: tuple[int, ...]) -> str:
    """What to do about an array that looks (bands, height, width), as rasterio's ``read()`` returns; "" otherwise."""
    if len(shape) != 3 or not shape[0] <= MAX_BANDS_FIRST or shape[0] >= min(shape[1], shape[2]):
        return ""
    bands, height, width = shape
    return (f"the array is shaped ({bands}, {height}, {width}), read as {bands} × {height} pixels "
            f"(height × width) of {width} bands; images are (height, width, bands), so an array of "
            f"(bands, height, width), as rasterio's read() returns, needs np.moveaxis(a, 0, -1) first")


def hint_image_layout(error: DialError, shape: tuple[int, ...]) -> DialError:
    """``error`` with :func:`image_layout_hint` when the server refused the image's bands and the array
    looks band-first; ``error`` itself otherwise."""
    hint = image_layout_hint(shape)
    if hint and any(v.field.endswith(".bands") for v in error.field_violations):
        return error.with_hint(hint)
    return error


def error_from_rpc(error: grpc.RpcError) -> DialError:
    """The typed exception for a failed call, field violations decoded when possible."""
    code = _call_attribute(error, "code") or grpc.StatusCode.UNKNOWN
    message = _call_attribute(error, "details") or ""
    # Blocking stubs raise grpc.Call objects, grpc.aio raises AioRpcError; both carry trailers.
    violations = field_violations(error) if callable(getattr(error, "trailing_metadata", None)) else ()
    return _ERROR_TYPES.get(code, DialError)(code, message, violations)


def field_violations(call: grpc.RpcError) -> tuple[FieldViolation, ...]:
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
