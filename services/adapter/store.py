"""The durable session store: one folder per session, every change committed before the reply.

The files and their format are ``dial_services.common.session_record``'s,
which Acquisition reads too; this module adds the writes.

``meta.json`` is the commit point: every file is written to a temporary
name, fsynced and renamed into place, and a new state file is written
*before* the meta that names it, so a crash at any instant leaves either the
old session or the new one, never a mix. A session folder itself appears by
renaming a complete staging folder.

A session whose meta cannot be read is moved to ``<root>/quarantine/<id>/``
(see ``durable``): other callers' sessions are listed and created as ever,
and its owner is told it is damaged and may delete it.
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dial.files import fsync_dir
from dial_services.common import durable
from dial_services.common.session_record import META_FILE, SessionFiles, SessionRecord

REQUESTS_LOCK = ".requests.lock"


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class SessionStore(SessionFiles):
    def __init__(self, root: str | Path):
        super().__init__(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def requests_locked(self):
        """Hold the store-wide lock under which creates with a request id look for an earlier session and
        make theirs, so that two replicas given the same retried create make one session between them."""
        try:
            fd = durable.open_lock(self.root / REQUESTS_LOCK)
        except FileNotFoundError:  # a read-only store without the file: no create can write anyway
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def touch(self, session_id: str) -> None:
        """Record a use of the session (its lock file's mtime), for idle expiry; not fsynced, as losing
        it only makes a session expire a little early after a crash."""
        with contextlib.suppress(OSError):
            os.utime(self.folder(session_id) / "lock")

    # -- writing -----------------------------------------------------------
    def create(self, record: SessionRecord, image: np.ndarray, p0: np.ndarray) -> None:
        """Write a whole session into a staging folder, then rename it into place."""
        staging = self.root / f".staging-{record.id}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir()
            durable.atomic_write_bytes(staging / "image.npy", _npy_bytes(np.ascontiguousarray(image)))
            durable.atomic_write_bytes(staging / "p0.npy", _npy_bytes(p0.astype(np.float16)))
            durable.atomic_write_bytes(staging / META_FILE, record.to_json().encode())
            durable.write_owner(staging, record.owner)
            (staging / "lock").touch()
            os.replace(staging, self.folder(record.id))
            fsync_dir(self.root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def commit(self, record: SessionRecord, state: dict | None = None) -> SessionRecord:
        """Make ``record`` (and a new adaptation ``state``) the session's durable state.

        Call with the session lock held. Returns the record as committed.
        """
        folder = self.folder(record.id)
        if state is not None:
            name = f"state-{record.revision}.pt"
            buffer = io.BytesIO()
            torch.save(state, buffer)
            durable.atomic_write_bytes(folder / name, buffer.getvalue())
            record = replace(record, state_file=name)
        durable.atomic_write_bytes(folder / META_FILE, record.to_json().encode())
        for stale in folder.glob("state-*.pt"):
            if stale.name != record.state_file:
                with contextlib.suppress(OSError):
                    stale.unlink()
        return record

    def delete(self, session_id: str) -> None:
        """Remove a session; call with its lock held. The rename makes the removal atomic."""
        folder = self.folder(session_id)
        trash = self.root / f".deleted-{session_id}-{uuid.uuid4().hex[:8]}"
        try:
            os.replace(folder, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)
