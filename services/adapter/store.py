"""The durable session store: one folder per session, every change committed before the reply.

Layout of ``<root>/<id>/``:

* ``image.npy`` -- the session's image, native dtype, written once at creation;
* ``p0.npy`` -- the click-free probabilities before any adaptation (float16);
* ``state-<revision>.pt`` -- trainable weights, optimiser state and counters
  after the adaptation that produced that revision;
* ``meta.json`` -- owner, model, clicks, counters, timestamps, settings,
  ``revision`` and the name of the state file in force;
* ``lock`` -- the file ``fcntl.flock`` serialises callers on, across processes;
* ``owner`` -- the caller it belongs to, kept apart so that it survives damage to the meta.

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
import json
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from dial.files import fsync_dir
from dial_services.common import durable
from dial_services.common.durable import DAMAGE, DamagedRecord, open_lock
from dial_services.common.errors import invalid_argument, quoted

_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class SessionRecord:
    """Everything about a session except its arrays and adapted weights."""

    id: str
    owner: str
    model_name: str
    model_version: str
    height: int
    width: int
    clicks: tuple[tuple[int, int, int], ...]
    settings: dict
    create_time: float
    update_time: float
    adaptation_count: int = 0
    revision: int = 0
    state_file: str | None = None
    geo_crs: str | None = None
    geo_transform: tuple[float, ...] | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "SessionRecord":
        data = json.loads(text)
        data["clicks"] = tuple(tuple(c) for c in data["clicks"])
        if data.get("geo_transform") is not None:
            data["geo_transform"] = tuple(data["geo_transform"])
        return cls(**data)

    def changed(self, now: float, **changes) -> "SessionRecord":
        return replace(self, revision=self.revision + 1, update_time=now, **changes)


def new_session_id() -> str:
    return uuid.uuid4().hex


def is_session_id(text: str) -> bool:
    return bool(_ID.match(text))


def session_id_of(name: str, field: str = "name") -> str:
    """The id in a session's resource name ``sessions/{id}``; INVALID_ARGUMENT naming ``field`` otherwise."""
    prefix, _, session_id = name.partition("/")
    if prefix != "sessions" or not is_session_id(session_id):
        raise invalid_argument([(field, f"expected 'sessions/{{id}}', got {quoted(name)}")])
    return session_id


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class SessionStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, session_id: str) -> Path:
        return self.root / session_id

    # -- locking -----------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, session_id: str, blocking: bool = True):
        """Hold the session's cross-process lock; yields False when the session does not exist
        (or, with ``blocking=False``, when another holder has it)."""
        path = self.folder(session_id) / "lock"
        try:
            fd = open_lock(path)
        except FileNotFoundError:
            yield False
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            # A session deleted while we waited leaves us holding the lock of a vanished folder.
            yield (self.folder(session_id) / "meta.json").exists()
        finally:
            os.close(fd)

    # -- reading -----------------------------------------------------------
    def read_record(self, session_id: str) -> SessionRecord | None:
        """The session's record, None when there is none; DamagedRecord (once it is moved aside) when its
        meta cannot be read."""
        try:
            return SessionRecord.from_json((self.folder(session_id) / "meta.json").read_text())
        except FileNotFoundError:
            return None
        except DAMAGE as error:
            owner = durable.quarantine(self.root, session_id, "meta.json", error)
            raise DamagedRecord(f"sessions/{session_id}", owner) from None

    def damaged_owner(self, session_id: str) -> str | None:
        """The owner of a session that was moved aside as damaged; None when there is no such session."""
        return durable.quarantined(self.root, session_id, "meta.json")[1] if is_session_id(session_id) else None

    def delete_damaged(self, session_id: str) -> bool:
        return is_session_id(session_id) and durable.remove_quarantined(self.root, session_id)

    def quarantined_count(self) -> int:
        return durable.quarantined_count(self.root)

    def remove_leftovers(self, older_than: float) -> int:
        """Temporary files and staging folders left by a process killed mid-write (see ``durable``)."""
        return durable.remove_leftovers(self.root, older_than)

    def touch(self, session_id: str) -> None:
        """Record a use of the session (its lock file's mtime), for idle expiry; not fsynced, as losing
        it only makes a session expire a little early after a crash."""
        with contextlib.suppress(OSError):
            os.utime(self.folder(session_id) / "lock")

    def last_used(self, record: SessionRecord) -> float:
        try:
            used = (self.folder(record.id) / "lock").stat().st_mtime
        except OSError:
            used = 0.0
        return max(record.update_time, used)

    def expired(self, record: SessionRecord, ttl_seconds: float, now: float) -> bool:
        """Whether the session has been idle longer than ``ttl_seconds`` (0: sessions never expire)."""
        return ttl_seconds > 0 and now - self.last_used(record) > ttl_seconds

    def read_image(self, session_id: str) -> np.ndarray:
        return np.load(self.folder(session_id) / "image.npy", allow_pickle=False)

    def read_arrays(self, session_id: str) -> tuple[np.ndarray, np.ndarray]:
        p0 = np.load(self.folder(session_id) / "p0.npy", allow_pickle=False)
        return self.read_image(session_id), p0

    def read_state(self, record: SessionRecord) -> dict | None:
        if record.state_file is None:
            return None
        return torch.load(self.folder(record.id) / record.state_file, map_location="cpu", weights_only=True)

    def records(self) -> list[SessionRecord]:
        """Every readable session; damaged ones are moved aside and skipped, so they hold up no one."""
        found = []
        for entry in self.root.iterdir():
            if is_session_id(entry.name):
                with contextlib.suppress(DamagedRecord):
                    record = self.read_record(entry.name)
                    if record is not None:
                        found.append(record)
        return found

    # -- writing -----------------------------------------------------------
    def create(self, record: SessionRecord, image: np.ndarray, p0: np.ndarray) -> None:
        """Write a whole session into a staging folder, then rename it into place."""
        staging = self.root / f".staging-{record.id}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir()
            durable.atomic_write_bytes(staging / "image.npy", _npy_bytes(np.ascontiguousarray(image)))
            durable.atomic_write_bytes(staging / "p0.npy", _npy_bytes(p0.astype(np.float16)))
            durable.atomic_write_bytes(staging / "meta.json", record.to_json().encode())
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
        durable.atomic_write_bytes(folder / "meta.json", record.to_json().encode())
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
