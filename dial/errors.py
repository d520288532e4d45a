"""Kinds of failure a caller can act on, raised by the core and by the services alike.

An exception's kind says what the caller can do about it (ask for something
else, retry later, delete a damaged record), and its message says it to the
caller: no server path, no class name. The services map each kind to one
gRPC status code in one table (``dial_services.common.errors``), so a kind
means the same to every caller whichever layer raised it. The core knows
nothing of gRPC.
"""
from __future__ import annotations

import errno

# A volume out of room, or the caller's share of it.
FULL = (errno.ENOSPC, errno.EDQUOT)


class DialError(Exception):
    """A failure whose message is fit for the caller."""


class NotFound(DialError, LookupError):
    """What was asked for does not exist."""


class AlreadyExists(DialError):
    """The name is taken by something that is never overwritten (a model version)."""


class PermissionDenied(DialError):
    """The caller may not have it (a path outside the server's allowed roots, a file the server may not read)."""


class Unusable(DialError):
    """It exists but cannot be used as asked: a model version with a broken manifest or missing files, or
    something not in the state the call needs (a job that has not finished, a session with no click to undo)."""


class Damaged(DialError):
    """It exists but cannot be read back (truncated, edited by hand); its owner may delete it."""


class Exhausted(DialError):
    """A limit is reached (a full queue, a caller's quota, a store out of room); retry later, or ask for less."""


class StoreFull(Exhausted):
    """A store refused a write for want of room."""


class Unavailable(DialError):
    """It cannot be done now but may be later; retry."""


class StoreReadOnly(Unavailable):
    """A store refused a write because it is mounted read-only."""


class DeadlineExceeded(DialError):
    """The caller's deadline passed before the work finished."""


def refusal_kind(error: OSError) -> type[StoreFull] | type[StoreReadOnly] | None:
    """The kind of a write a store refused for its room or its mode; None for any other failure."""
    if error.errno in FULL:
        return StoreFull
    if error.errno == errno.EROFS:
        return StoreReadOnly
    return None


def store_refusal(error: OSError, store: str, unchanged: str) -> StoreFull | StoreReadOnly | None:
    """Why ``store`` refused a write, as a kind the caller can act on (``unchanged`` says what stays as it
    was), or None when the failure is not the store's room or mode."""
    kind = refusal_kind(error)
    if kind is None:
        return None
    return kind(f"the {store} is {'full' if kind is StoreFull else 'read-only'}; {unchanged}")
