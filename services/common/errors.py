"""Errors are part of the API: one mapping from failures to gRPC status codes.

Handlers raise :class:`ApiError` (or let core exceptions escape); the call
guard turns them into a ``google.rpc.Status`` with ``BadRequest`` field
violations where a field is at fault. Anything unexpected becomes INTERNAL
with a request id, and the stack trace stays in the server log.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status


MAX_MESSAGE_CHARS = 1000
MAX_FIELD_CHARS = 300
MAX_VIOLATIONS = 20
FULL_STORE = (errno.ENOSPC, errno.EDQUOT)


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


def not_found(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.NOT_FOUND, message)


def permission_denied(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.PERMISSION_DENIED, message)


def resource_exhausted(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


def failed_precondition(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unavailable(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.UNAVAILABLE, message)


def data_loss(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.DATA_LOSS, message)


def store_write_error(error: OSError, store: str, unchanged: str) -> ApiError | None:
    """The status for a write ``store`` refused (``unchanged`` says what stays as it was), or None when the
    error is not the store's capacity or mode."""
    if error.errno in FULL_STORE:
        return resource_exhausted(f"the {store} is full; {unchanged}")
    if error.errno == errno.EROFS:
        return unavailable(f"the {store} is read-only; {unchanged}")
    return None


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


assert code_pb2.INVALID_ARGUMENT == grpc.StatusCode.INVALID_ARGUMENT.value[0]
