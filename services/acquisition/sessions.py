"""Adapter sessions as a ranking source, read from the store the Adapter writes (its format is
``dial_services.common.session_record``'s).

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

from dial.errors import NotFound
from dial_services.common.durable import DAMAGE, DamagedRecord
from dial_services.common.session_record import SessionFiles, SessionRecord, damaged_session


@dataclass(frozen=True)
class SessionSnapshot:
    record: SessionRecord
    image: np.ndarray
    state: dict | None


class SessionReader:
    def __init__(self, root: Path, ttl_seconds: float, clock=time.time):
        self.root = Path(root)
        self.ttl_seconds = ttl_seconds
        self.clock = clock

    def read(self, caller: str, session_id: str) -> SessionSnapshot:
        missing = NotFound(f"sessions/{session_id} does not exist in the session store this server reads")
        if not self.root.is_dir():
            raise missing
        store = SessionFiles(self.root)
        with store.locked(session_id) as exists:
            try:
                record = store.read_record(session_id) if exists else None
                owner_if_damaged = None if exists else store.damaged_owner(session_id)
            except DamagedRecord as error:
                record, owner_if_damaged = None, error.owner
            if record is None and owner_if_damaged == caller:
                raise damaged_session(session_id)
            if record is None or record.owner != caller or store.expired(record, self.ttl_seconds, self.clock()):
                raise missing
            try:
                return SessionSnapshot(record, store.read_image(session_id), store.read_state(record))
            except DAMAGE + (EOFError, RuntimeError):  # numpy's and torch.load's words for a damaged file
                raise damaged_session(session_id) from None
