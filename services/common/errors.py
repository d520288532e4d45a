"""Errors are part of the API: the one mapping from failures to gRPC status codes.

Handlers validate at the edge and raise :class:`ApiError`: INVALID_ARGUMENT
with ``BadRequest`` field violations, one per field at fault. Everything else
raises one of
the kinds in :mod:`dial.errors`, from the core or from a service, and
:data:`STATUS_CODES` is the one table that turns a kind into a code.
:func:`status_for` applies it for the call guard and for queue jobs; anything
unexpected becomes INTERNAL with a request id, and the stack trace stays in
the server log.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Callable

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from dial import errors as kinds
from dial.model.manifest import ManifestError

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 1000
MAX_FIELD_CHARS = 300
MAX_VIOLATIONS = 20


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 25] + f"... ({len(text)} characters)"


def quoted(value: str, limit: int = 80) -> str:
    """A caller's text for an error message: quoted, and cut short, since callers choose its length."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


@dataclass
class ApiError(Exception):
    code: grpc.StatusCode
    message: str
    violations: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A message that echoes a caller's input must still fit in gRPC's 8 KiB of trailing metadata,
        # where the status and its details travel; beyond it the client gets RESOURCE_EXHAUSTED instead.
        self.message = _bounded(self.message, MAX_MESSAGE_CHARS)
        self.violations = [(_bounded(f, MAX_FIELD_CHARS), _bounded(d, MAX_FIELD_CHARS))
                           for f, d in self.violations[:MAX_VIOLATIONS]]

    def __str__(self) -> str:
        return self.message

    def to_status(self) -> grpc.Status:
        proto = status_pb2.Status(code=self.code.value[0], message=self.message)
        if self.violations:
            detail = any_pb2.Any()
            detail.Pack(error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in self.violations
            ]))
            proto.details.append(detail)
        return rpc_status.to_status(proto)


def invalid_argument(violations: list[tuple[str, str]]) -> ApiError:
    summary = "; ".join(f"{f}: {d}" for f, d in violations[:5])
    more = f" (and {len(violations) - 5} more)" if len(violations) > 5 else ""
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid request: {summary}{more}", list(violations))


class Violations:
    """Collects field violations so one reply lists every problem at once."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field_path: str, description: str) -> None:
        self.items.append((field_path, description))

    def check(self, condition: bool, field_path: str, description: str) -> bool:
        if not condition:
            self.add(field_path, description)
        return condition

    def raise_if_any(self) -> None:
        if self.items:
            raise invalid_argument(self.items)


def _said(error: BaseException) -> str:
    return str(error)


# Each kind's code, and what its caller is told. A kind not listed takes the entry of the nearest kind it
# derives from (ModelNotFound is a NotFound); an exception of no listed kind is INTERNAL.
STATUS_CODES: dict[type[BaseException], tuple[grpc.StatusCode, Callable[[BaseException], str]]] = {
    kinds.NotFound: (grpc.StatusCode.NOT_FOUND, _said),
    kinds.AlreadyExists: (grpc.StatusCode.ALREADY_EXISTS, _said),
    kinds.PermissionDenied: (grpc.StatusCode.PERMISSION_DENIED, _said),
    kinds.Unusable: (grpc.StatusCode.FAILED_PRECONDITION, _said),
    ManifestError: (grpc.StatusCode.FAILED_PRECONDITION, lambda error: f"model unusable: {error}"),
    kinds.Damaged: (grpc.StatusCode.DATA_LOSS, _said),
    kinds.Exhausted: (grpc.StatusCode.RESOURCE_EXHAUSTED, _said),
    kinds.Unavailable: (grpc.StatusCode.UNAVAILABLE, _said),
    kinds.DeadlineExceeded: (grpc.StatusCode.DEADLINE_EXCEEDED, _said),
    MemoryError: (grpc.StatusCode.RESOURCE_EXHAUSTED, lambda _: "the server ran out of memory for this request"),
}


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str, grpc.Status | None]:
    """The status code and client message for any failure (and the full status where it has details)."""
    if isinstance(error, ApiError):
        return error.code, error.message, error.to_status()
    for kind in type(error).__mro__:
        if kind in STATUS_CODES:
            code, message = STATUS_CODES[kind]
            return code, _bounded(message(error), MAX_MESSAGE_CHARS), None
    request_id = uuid.uuid4().hex[:12]
    log.exception("internal error, request id %s", request_id, exc_info=error)
    return grpc.StatusCode.INTERNAL, f"internal error (request id {request_id})", None


assert code_pb2.INVALID_ARGUMENT == grpc.StatusCode.INVALID_ARGUMENT.value[0]
