"""The session store's format: what the Adapter writes of a session and what Acquisition reads back.

Layout of ``<root>/<id>/``:

* ``image.npy`` -- the session's image, native dtype, written once at creation;
* ``p0.npy`` -- the click-free probabilities before any adaptation (float16);
* ``state-<revision>.pt`` -- trainable weights, optimiser state and counters
  after the adaptation that produced that revision;
* ``meta.json`` -- the :class:`SessionRecord`: owner, model, clicks, counters,
  timestamps, settings, georeference, ``revision`` and the name of the state
  file in force;
* ``lock`` -- the file ``fcntl.flock`` serialises callers on, across processes;
* ``owner`` -- the caller it belongs to, kept apart so that it survives damage to the meta.

``meta.json`` keeps clicks as ``[row, col, class_id]`` lists and the
georeference as ``geo_crs`` and ``geo_transform``, as every session written
so far does, so that sessions survive upgrades and replicas of two releases
can share one store. In memory they are :class:`dial.clicks.Click` and
:class:`dial.imagery.georef.GeoReference`.

The Adapter's ``SessionStore`` adds the writes to :class:`SessionFiles`;
Acquisition only reads, through :class:`SessionFiles` itself.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import uuid
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

from dial.clicks import Click
from dial.errors import Damaged
from dial.imagery.georef import GeoReference
from dial_services.common.durable import DamagedRecord, RecordStore, open_lock
from dial_services.common.errors import invalid_argument, quoted

_ID = re.compile(r"^[0-9a-f]{32}$")
META_FILE = "meta.json"


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


def damaged_session(session_id: str) -> Damaged:
    """What the owner of a session whose files cannot be read back is told, by either service."""
    return Damaged(f"sessions/{session_id} is damaged in the session store and cannot be used; "
                   "delete it (DeleteSession) and create it again")


@dataclass(frozen=True)
class SessionRecord:
    """Everything about a session except its arrays and adapted weights."""

    id: str
    owner: str
    model_name: str
    model_version: str
    height: int
    width: int
    clicks: tuple[Click, ...]
    settings: dict
    create_time: float
    update_time: float
    adaptation_count: int = 0
    revision: int = 0
    state_file: str | None = None
    geo: GeoReference | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("clicks", "geo")}
        data["clicks"] = [[c.row, c.col, c.class_id] for c in self.clicks]
        data["geo_crs"] = self.geo.crs if self.geo is not None else None
        data["geo_transform"] = list(self.geo.transform) if self.geo is not None else None
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "SessionRecord":
        data = json.loads(text)
        data["clicks"] = tuple(Click(int(r), int(c), int(k)) for r, c, k in data["clicks"])
        crs, transform = data.pop("geo_crs", None), data.pop("geo_transform", None)
        data["geo"] = GeoReference(crs, transform) if transform is not None else None
        return cls(**data)

    def changed(self, now: float, **changes) -> "SessionRecord":
        return replace(self, revision=self.revision + 1, update_time=now, **changes)


class SessionFiles(RecordStore):
    """A session store read as it is: records, images, adaptation states, locks and idle times.

    Nothing here writes a record, so a store mounted read-only serves it.
    """

    record_file = META_FILE
    collection = "sessions"
    is_id = staticmethod(is_session_id)

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
            yield (self.folder(session_id) / META_FILE).exists()
        finally:
            os.close(fd)

    def read_record(self, session_id: str) -> SessionRecord | None:
        """The session's record, None when there is none; DamagedRecord (once it is moved aside) when its
        meta cannot be read."""
        return self._read(session_id, SessionRecord.from_json)

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
