"""The one table from kinds of failure to gRPC status codes, and the core's store refusals."""
import errno
import logging

import grpc
import pytest

from dial import errors as kinds
from dial.acquisition.model import HeadMissing
from dial.model.manifest import ManifestError
from dial.model.repository import ModelNotFound
from dial_services.common.call_guard import DeadlineExpired, StreamTimedOut
from dial_services.common.errors import STATUS_CODES, invalid_argument, status_for


@pytest.mark.parametrize("error, code, message", [
    (ModelNotFound("model 'x' is not in the repository"), grpc.StatusCode.NOT_FOUND,
     "model 'x' is not in the repository"),
    (kinds.AlreadyExists("model a:1 already exists"), grpc.StatusCode.ALREADY_EXISTS, "model a:1 already exists"),
    (ManifestError("weights missing"), grpc.StatusCode.FAILED_PRECONDITION, "model unusable: weights missing"),
    (HeadMissing("no confidnet head"), grpc.StatusCode.FAILED_PRECONDITION, "model unusable: no confidnet head"),
    (kinds.Damaged("sessions/1 is damaged"), grpc.StatusCode.DATA_LOSS, "sessions/1 is damaged"),
    (kinds.StoreFull("the job store is full"), grpc.StatusCode.RESOURCE_EXHAUSTED, "the job store is full"),
    (kinds.StoreReadOnly("read-only"), grpc.StatusCode.UNAVAILABLE, "read-only"),
    (DeadlineExpired(), grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before the work finished"),
    (StreamTimedOut("no request message arrived"), grpc.StatusCode.DEADLINE_EXCEEDED,
     "no request message arrived"),
    (MemoryError(), grpc.StatusCode.RESOURCE_EXHAUSTED, "the server ran out of memory for this request"),
])
def test_each_kind_has_its_code_and_says_its_message(error, code, message):
    assert status_for(error)[:2] == (code, message)


def test_every_kind_of_the_core_is_in_the_table():
    declared = {k for k in vars(kinds).values()
                if isinstance(k, type) and issubclass(k, kinds.DialError) and k is not kinds.DialError}
    unmapped = [k.__name__ for k in declared if not any(base in STATUS_CODES for base in k.__mro__)]
    assert unmapped == []


def test_a_handlers_own_status_keeps_its_field_violations():
    code, message, status = status_for(invalid_argument([("image.height", "must be > 0")]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "image.height" in message and status is not None


def test_anything_else_is_internal_with_a_request_id_and_no_detail(caplog):
    with caplog.at_level(logging.ERROR):
        code, message, _ = status_for(ValueError("/srv/private/path broke"))
    assert code == grpc.StatusCode.INTERNAL
    assert message.startswith("internal error (request id ") and "/srv" not in message
    assert "/srv/private/path broke" in caplog.text  # the operator still finds it in the log


def test_a_store_refusal_says_which_store_and_what_is_unchanged():
    full = kinds.store_refusal(OSError(errno.EDQUOT, "Disk quota exceeded"), "job store", "no job was created")
    read_only = kinds.store_refusal(OSError(errno.EROFS, "Read-only file system"), "session store", "it is kept")
    assert isinstance(full, kinds.StoreFull) and str(full) == "the job store is full; no job was created"
    assert isinstance(read_only, kinds.StoreReadOnly)
    assert str(read_only) == "the session store is read-only; it is kept"
    assert kinds.store_refusal(OSError(errno.EIO, "Input/output error"), "job store", "") is None
