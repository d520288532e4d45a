"""Atomic file writes: a reader sees the old file or the new one, whole, even after a crash.

New content goes to a temporary file beside the target, is flushed to the
disk, and is renamed over the target; then the folder is synced, so that the
rename itself survives a crash. The rename replaces whatever is at the target
(a planted symlink included) instead of writing through it.

Every file DIAL writes in place goes through here: model versions' marks and
side manifests, ONNX exports, checkpoints, the services' stores and output
rasters. The temporary file is named ``.<name>.<8 hex digits>.tmp``
(:data:`TEMPORARY_NAME`), so that a store can tell what a process killed
mid-write left behind.
"""
from __future__ import annotations

import contextlib
import os
import re
import uuid
from pathlib import Path
from typing import Iterator

TEMPORARY_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


def fsync_dir(path: str | Path) -> None:
    """Make the renames and removals in folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that takes a file name (``torch.save``, an ONNX export,
    a GeoTIFF writer). When the block ends, what was written there is synced and renamed onto ``path``; when
    it raises, it is removed and ``path`` stays as it was.

    ``overwrite=False`` publishes with a hard link instead of a rename, which fails with FileExistsError
    when ``path`` exists, even one created by another writer while this one ran."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
            tmp.unlink()
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode())
