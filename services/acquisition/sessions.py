"""Adapter sessions as a ranking source, read from the store the Adapter writes.

Acquisition only reads. It holds a session's lock just while it reads the
record, image and adaptation state, so it never sees half of an Adapter
commit; it answers NOT_FOUND for another caller's session, as the Adapter
does, and DATA_LOSS to the owner of one that cannot be read; and it neither
extends a session's life nor deletes an expired one, which stays the
Adapter's job, so the store may be mounted read-only here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dial.clicks import Click
from dial_services.adapter.sessions import damaged
from dial_services.adapter.store import SessionRecord, SessionStore
from dial_services.common.durable import DAMAGE, DamagedRecord
from dial_services.common.errors import not_found


@dataclass(frozen=True)
class SessionSnapshot:
    record: SessionRecord
    image: np.ndarray
    state: dict | None

    @property
    def clicks(self) -> list[Click]:
        return [Click(*c) for c in self.record.clicks]

    @property
    def geo(self) -> tuple | None:
        return (self.record.geo_crs, self.record.geo_transform) if self.record.geo_transform else None


class SessionReader:
    def __init__(self, root: Path, ttl_seconds: float, clock=time.time):
        self.root = Path(root)
        self.ttl_seconds = ttl_seconds
        self.clock = clock

    def read(self, caller: str, session_id: str) -> SessionSnapshot:
        missing = not_found(f"sessions/{session_id} does not exist in the session store this server reads")
        if not self.root.is_dir():
            raise missing
        store = SessionStore(self.root)
        with store.locked(session_id) as exists:
            try:
                record = store.read_record(session_id) if exists else None
                owner_if_damaged = None if exists else store.damaged_owner(session_id)
            except DamagedRecord as error:
                record, owner_if_damaged = None, error.owner
            if record is None and owner_if_damaged == caller:
                raise damaged(session_id)
            if record is None or record.owner != caller or store.expired(record, self.ttl_seconds, self.clock()):
                raise missing
            try:
                return SessionSnapshot(record, store.read_image(session_id), store.read_state(record))
            except DAMAGE + (EOFError, RuntimeError):  # numpy's and torch.load's words for a damaged file
                raise damaged(session_id) from None
