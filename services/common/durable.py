"""Files that survive a crash and that several replicas share: atomic writes and cross-process locks.

The Adapter's session store and Acquisition's queue-job store both live on a
shared volume (POSIX locks and atomic rename; NFSv4, CephFS, EFS) and build on
these.
"""
from __future__ import annotations

import contextlib
import errno
import os
import uuid
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old or the new file, whole, even after a crash."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def open_lock(path: Path) -> int:
    """A descriptor to ``fcntl.flock`` on; FileNotFoundError when the folder holding it is gone."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        if error.errno != errno.EROFS:
            raise
    # On a store remounted read-only, records must stay readable: flock works on a read-only descriptor.
    return os.open(path, os.O_RDONLY)
