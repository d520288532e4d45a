"""Live sessions: an LRU of adapters in memory over the durable store.

Every call on a session runs under two locks, a thread lock for this
process and the store's ``flock`` for other processes (replicas sharing the
store, or a restarted server), and starts by comparing the in-memory
revision with the store's: a session another replica changed, or one that
was evicted, is reloaded from the store. Different sessions never share a
lock, so they run in parallel.

A change is computed aside, committed to the store, and only then becomes
the in-memory state; when the store refuses the write (full, read-only) the
session is left exactly as it was.

A session whose files cannot be read back is its owner's problem alone: they
get DATA_LOSS and may delete it, and everyone else's calls go on as before.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from dial.adaptation.disca import DiscaAdapter, DiscaSettings
from dial.errors import AlreadyExists, Damaged, Exhausted, NotFound, store_refusal
from dial.imagery.georef import GeoReference
from dial.model.manifest import Manifest
from dial.model.repository import ModelRef, ModelRepository
from dial_services.adapter.store import SessionStore
from dial_services.common.durable import DAMAGE, LEFTOVER_SECONDS, DamagedRecord
from dial_services.common.session_record import SessionRecord, damaged_session, new_session_id

log = logging.getLogger(__name__)


class RequestConflict(AlreadyExists):
    """A request id the caller already used, for a session created from another request."""

    def __init__(self, request_id: str, session_id: str):
        super().__init__(f"request_id {request_id!r} was already used for sessions/{session_id} with a "
                         "different request; send a new request_id to create another session, or the same "
                         "request to get that one")


@dataclass
class LiveSession:
    record: SessionRecord
    adapter: DiscaAdapter


class SessionManager:
    def __init__(self, store: SessionStore, repo: ModelRepository, *, ttl_seconds: float, max_in_memory: int,
                 max_per_caller: int, clock=time.time, on_evict=lambda: None, on_active=lambda n: None):
        self.store = store
        self.repo = repo
        self.ttl_seconds = ttl_seconds
        self.max_in_memory = max_in_memory
        self.max_per_caller = max_per_caller
        self.clock = clock
        self.on_evict = on_evict
        self.on_active = on_active
        self._live: OrderedDict[str, LiveSession] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._models: dict[tuple[str, str], tuple[torch.nn.Module, Manifest]] = {}
        self._create_lock = threading.Lock()
        try:
            store.remove_leftovers(older_than=time.time() - LEFTOVER_SECONDS)
        except OSError as error:  # a read-only store: nothing to clean, nothing new to leave behind
            log.warning("cannot clear interrupted writes from the session store: %s", error.strerror)

    # -- models ------------------------------------------------------------
    def base_model(self, name: str, version: str | None) -> tuple[torch.nn.Module, Manifest]:
        name, version = self.repo.resolve(ModelRef(name, version))
        with self._guard:
            cached = self._models.get((name, version))
        if cached is None:
            cached = self.repo.load_torch(ModelRef(name, version))
            with self._guard:
                self._models.setdefault((name, version), cached)
        return cached

    # -- lifecycle ---------------------------------------------------------
    def expired(self, record: SessionRecord) -> bool:
        return self.store.expired(record, self.ttl_seconds, self.clock())

    def owned(self, caller: str) -> list[SessionRecord]:
        return [r for r in self.store.records() if r.owner == caller and not self.expired(r)]

    def created_for(self, caller: str, request_id: str, request_digest: str) -> SessionRecord | None:
        """The live session ``caller`` created with ``request_id``, if any (None for no id); RequestConflict
        when it was created from another request (``request_digest`` identifies the request)."""
        if not request_id:
            return None
        for record in self.owned(caller):
            if record.extra.get("request_id") == request_id:
                if record.extra.get("request_digest") != request_digest:
                    raise RequestConflict(request_id, record.id)
                return record
        return None

    def create(self, caller: str, model: tuple[str, str | None], image: np.ndarray, settings: DiscaSettings,
               geo: GeoReference | None, *, request_id: str = "", request_digest: str = "") -> LiveSession:
        """A new session; with a ``request_id``, the one ``caller`` already made with it when there is one
        (its adapter is then left unloaded)."""
        base, manifest = self.base_model(*model)
        self._check_room(caller)
        adapter = DiscaAdapter(base, manifest, settings)
        p0 = adapter.start(image)
        # Counting again and creating under one lock keeps parallel creates within the limit
        # (within this process; replicas may overshoot it by their number). A create with a request id
        # also holds the store's request lock, so that retries reaching two replicas make one session.
        with self._create_lock, (self.store.requests_locked() if request_id else contextlib.nullcontext()):
            earlier = self.created_for(caller, request_id, request_digest)
            if earlier is not None:
                return LiveSession(earlier, adapter=None)
            self._check_room(caller)
            now = self.clock()
            record = SessionRecord(
                id=new_session_id(), owner=caller, model_name=manifest.name, model_version=manifest.version,
                height=int(image.shape[0]), width=int(image.shape[1]), clicks=(),
                # Resolved against the model's tuned defaults, so the session keeps them.
                settings=adapter.settings.to_dict(),
                create_time=now, update_time=now, geo=geo,
                extra={"request_id": request_id, "request_digest": request_digest} if request_id else {},
            )
            self._write(lambda: self.store.create(record, image, p0))
        live = LiveSession(record, adapter)
        self._remember(live)
        return live

    def _check_room(self, caller: str) -> None:
        if len(self.owned(caller)) >= self.max_per_caller:
            raise Exhausted(f"caller {caller!r} already has {self.max_per_caller} sessions, the "
                            "most allowed; delete one first")

    def _write(self, action):
        try:
            return action()
        except OSError as error:
            mapped = store_refusal(error, "session store", "the session is unchanged")
            if mapped is None:
                raise
            log.warning("session store write failed: %s", error)
            raise mapped from None

    @contextlib.contextmanager
    def session(self, caller: str, session_id: str, load: bool = True):
        """The caller's session, locked and up to date with the store; NOT_FOUND for anyone else's, DATA_LOSS
        for the caller's own when it cannot be read. With ``load=False`` its adapter is not rebuilt (for
        calls that only need the record)."""
        with self._guard:
            lock = self._locks.setdefault(session_id, threading.Lock())
        with lock, self.store.locked(session_id) as exists:
            try:
                record = self.store.read_record(session_id) if exists else None
                owner_if_damaged = None if exists else self.store.damaged_owner(session_id)
            except DamagedRecord as error:
                record, owner_if_damaged = None, error.owner
            if record is None or record.owner != caller:
                self._forget(session_id)
                if record is None and owner_if_damaged == caller:
                    raise damaged_session(session_id)
                raise NotFound(f"sessions/{session_id} does not exist")
            if self.expired(record):
                self.store.delete(session_id)
                self._forget(session_id)
                raise NotFound(f"sessions/{session_id} does not exist (it expired)")
            if not load:
                yield LiveSession(record, adapter=None)
                return
            live = self._fresh(record)
            self.store.touch(session_id)
            yield live
            self._remember(live)

    def _fresh(self, record: SessionRecord) -> LiveSession:
        with self._guard:
            live = self._live.get(record.id)
        if live is not None and live.record.revision == record.revision:
            return live
        if live is not None and live.record.state_file == record.state_file:
            live.record = record
            return live
        base, manifest = self.base_model(record.model_name, record.model_version)
        adapter = DiscaAdapter(base, manifest, DiscaSettings.from_dict(record.settings))
        try:
            image, p0 = self.store.read_arrays(record.id)
            state = self.store.read_state(record)
        except DAMAGE + (EOFError, RuntimeError) as error:  # numpy's and torch.load's words for a damaged file
            log.error("session %s cannot be loaded: %s: %s", record.id, type(error).__name__, str(error)[:200])
            raise damaged_session(record.id) from None
        adapter.start(image, p0=p0)
        if state is not None:
            adapter.load_state_dict(state)
        return LiveSession(record, adapter)

    def commit(self, live: LiveSession, record: SessionRecord, state: dict | None = None) -> None:
        """Make a change durable, then visible; on a store failure nothing changes."""
        live.record = self._write(lambda: self.store.commit(record, state))

    def delete(self, caller: str, session_id: str) -> None:
        try:
            with self.session(caller, session_id, load=False):
                self._write(lambda: self.store.delete(session_id))
        except Damaged:
            # Only the owner hears of the damage, so only the owner gets this far with a damaged session.
            if not self._write(lambda: self.store.delete_damaged(session_id)):
                self._write(lambda: self.store.delete(session_id))  # damaged in place: a read-only moment
        self._forget(session_id)

    # -- memory ------------------------------------------------------------
    def _remember(self, live: LiveSession) -> None:
        with self._guard:
            self._live[live.record.id] = live
            self._live.move_to_end(live.record.id)
            while len(self._live) > self.max_in_memory:
                self._live.popitem(last=False)
                self.on_evict()
            self.on_active(len(self._live))

    def _forget(self, session_id: str) -> None:
        with self._guard:
            self._live.pop(session_id, None)
            self.on_active(len(self._live))

    def in_memory(self) -> int:
        with self._guard:
            return len(self._live)

    def sweep(self) -> int:
        """Delete expired sessions from the store; returns how many went."""
        removed = 0
        for record in self.store.records():
            if not self.expired(record):
                continue
            with self.store.locked(record.id, blocking=False) as held:
                current = self.store.read_record(record.id) if held else None
                if current is not None and self.expired(current):
                    with contextlib.suppress(OSError):
                        self.store.delete(record.id)
                    removed += 1
            self._forget(record.id)
        return removed
