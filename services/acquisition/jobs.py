"""Queue jobs: rank patches over many rasters in background workers, on whichever replica is free.

Jobs live in the shared :class:`JobStore`, so every replica answers for every
job. Each replica runs a few worker threads that take PENDING jobs from the
store, oldest first. The replica running a job holds a lease on it and renews
it while it works; a replica that stops hands its jobs back (PENDING), and the
leases of one that dies lapse, so another replica starts those jobs again and
a rolling update or a lost pod loses no job. Cancellation is a flag on the job
that its replica notices between rasters and between the stages of one. Ranks
are final only once every raster is done, because a later raster may hold
better patches; hence patches are listed only from SUCCEEDED jobs.

Workers outlive whatever goes wrong. A store that refuses writes (full,
read-only) leaves jobs as they are, to run once it takes writes again, and is
reported through ``on_store_health`` (health and metrics); a job whose record
is damaged is moved aside and holds up no other job.
"""
from __future__ import annotations

import heapq
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import replace
from typing import Callable, Sequence

from dial.acquisition.ranking import RankedPatch
from dial.errors import Exhausted
from dial.imagery.georef import GeoReference
from dial_services.acquisition.job_store import FINAL, JobRecord, JobStore, StoredPatch, new_job_id, with_changes
from dial_services.common.durable import LEFTOVER_SECONDS, DamagedRecord, StoreWriteError
from dial_services.common.errors import status_for

log = logging.getLogger(__name__)

# rank(raster_uri, should_stop) -> (that raster's ranked patches, best first; its georeference or None)
RankRaster = Callable[[str, Callable[[], None]], tuple[Sequence[RankedPatch], GeoReference | None]]
# plan(stored spec) -> how to rank the job's rasters; called on the replica that runs the job
Plan = Callable[[bytes], RankRaster]
# How far the clocks of two replicas may disagree. A lease ending further ahead than one lease length plus
# this was not set by a clock that agrees with ours (a holder's clock set forward, say, before it died); it
# counts as lapsed, or no replica could ever take that job or cancel it.
CLOCK_SLACK_SECONDS = 5.0


def _score(q: StoredPatch) -> float:
    return q.patch.score


class JobCancelled(Exception):
    """Raised inside a worker when its job has been asked to stop."""


class JobLost(Exception):
    """Raised inside a worker when its replica no longer holds the job (it is stopping, or its lease lapsed)."""


class TooManyJobs(Exhausted):
    """A caller already has the most live jobs one caller may have."""

    def __init__(self, owner: str, live: int, most: int):
        super().__init__(f"{owner} has {live} queue jobs pending or running, the most one caller may have "
                         f"({most}); wait for one to finish or cancel one")
        self.live = live


class JobManager:
    def __init__(self, store: JobStore, plan: Plan, *, workers: int = 1, ttl_seconds: float = 24 * 3600.0,
                 max_live_per_owner: int = 16, lease_seconds: float = 60.0, poll_seconds: float = 2.0,
                 clock: Callable[[], float] = time.time, replica: str | None = None,
                 on_end: Callable[[str], None] = lambda state: None, on_take_over: Callable[[], None] = lambda: None,
                 on_store_health: Callable[[bool], None] = lambda writable: None):
        """``on_end(state)`` is told of each job this replica ends, ``on_take_over()`` of each job it takes
        over from a replica whose lease lapsed (both for metrics), ``on_store_health(writable)`` each time
        the store stops or starts taking writes (for health)."""
        self.store = store
        self.plan = plan
        self.ttl_seconds = ttl_seconds
        self.max_live_per_owner = max_live_per_owner
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.on_end = on_end
        self.on_take_over = on_take_over
        self.replica = replica or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._queues: OrderedDict[str, tuple[list[StoredPatch], dict]] = OrderedDict()
        self._workers = workers
        self._store_writable = True
        self.on_store_health = on_store_health

    def start(self, on_store_health: Callable[[bool], None] | None = None) -> "JobManager":
        """Start taking jobs from the store: once this replica serves, not before (and, as health lives on
        the server, ``on_store_health`` may be given only now)."""
        if on_store_health is not None:
            self.on_store_health = on_store_health
        try:
            self.store.remove_leftovers(older_than=time.time() - LEFTOVER_SECONDS)
        except OSError as error:
            log.warning("cannot clear interrupted writes from the job store: %s", error.strerror)
        threads = [threading.Thread(target=self._work, name=f"queue-job-{i}", daemon=True)
                   for i in range(self._workers)]
        threads.append(threading.Thread(target=self._keep_leases, name="queue-job-leases", daemon=True))
        for thread in threads:
            thread.start()
        return self

    # -- what callers ask --------------------------------------------------
    def create(self, owner: str, spec: bytes, rasters: Sequence[str], budget: int) -> JobRecord:
        """A new PENDING job; TooManyJobs when ``owner`` already has the most live jobs allowed."""
        try:
            with self._lock:  # exact on one replica; replicas racing may admit one or two over
                # A job just ended may keep its live mark a moment (it goes after the commit); it is not live.
                live = sum(1 for r in self._live_records() if r.owner == owner and r.state not in FINAL)
                if live >= self.max_live_per_owner:
                    raise TooManyJobs(owner, live, self.max_live_per_owner)
                now = self.clock()
                record = JobRecord(new_job_id(), owner, spec, tuple(rasters), budget, now, now)
                self.store.create(record)
        except StoreWriteError as error:
            self._store_state(False, error)
            raise
        self._store_state(True)
        self._wake.set()
        return record

    def get(self, job_id: str, owner: str) -> JobRecord | None:
        """The job, or None when there is none that ``owner`` may see (another caller's job looks missing);
        DamagedRecord when it is ``owner``'s and its record cannot be read."""
        try:
            record = self.store.read(job_id)
        except DamagedRecord as error:
            if error.owner == owner:
                raise
            return None
        if record is None:
            if self.store.damaged_owner(job_id) == owner:
                raise DamagedRecord(f"queueJobs/{job_id}", owner)
            return None
        if record.owner != owner or self._expired(record, self.clock()):
            return None
        return record

    def remove_damaged(self, job_id: str, owner: str) -> bool:
        """Delete ``owner``'s job if its record is damaged; whether it was."""
        try:
            self.get(job_id, owner)
            return False
        except DamagedRecord:
            if not self.store.delete_damaged(job_id):
                self.store.delete(job_id)  # damaged where it is: the store could not move it aside
            return True

    def cancel(self, record: JobRecord) -> JobRecord:
        """Cancel a PENDING job, or one whose replica no longer holds it, at once; ask a RUNNING one to stop
        (its replica notices within one stage)."""
        def change(r: JobRecord) -> JobRecord | None:
            now = self.clock()
            if r.state in FINAL:
                return None
            if r.state == "PENDING" or not self._lease_held(r, now):
                # No replica runs it (its holder died): nobody would notice a request to stop.
                return with_changes(r, now, state="CANCELLED", cancel_requested=True, holder="", lease_until=0.0)
            if r.cancel_requested:
                return None
            return with_changes(r, now, cancel_requested=True)

        return self.store.update(record.id, change) or record

    def page(self, record: JobRecord, page_size: int, after_rank: int
             ) -> tuple[list[StoredPatch], dict, int | None]:
        """Patches not yet done with rank > ``after_rank``, the rasters' georeferences, and the rank to
        continue after (None at the end). Call only for a SUCCEEDED job."""
        patches, geos = self._queue(record.id)
        done = self.store.read_done(record.id)
        remaining = [q for q in patches if q.patch.rank > after_rank and q.id not in done]
        page = remaining[:page_size]
        more = len(remaining) > page_size
        return page, geos, (page[-1].patch.rank if more and page else None)

    def mark_done(self, record: JobRecord, ids: Sequence[str]) -> tuple[int, list[str]]:
        """(newly marked, unknown ids); nothing is marked when any id is unknown."""
        known = {q.id for q in self._queue(record.id)[0]}
        unknown = [i for i in ids if i not in known]
        if unknown:
            return 0, unknown
        with self.store.locked(record.id) as current:
            if current is None:
                return 0, list(ids)
            done = self.store.read_done(record.id)
            new = set(ids) - done
            if new:
                self.store.write_done(record.id, done | new)
                # Marking is use: a queue being worked through does not expire.
                self.store.commit(with_changes(current, self.clock()))
            return len(new), []

    def close(self) -> None:
        """Stop taking jobs and hand the ones running here back, so another replica takes them at once."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            running = list(self._running)
        for job_id in running:
            self._change_if_held(job_id, state="PENDING", holder="", lease_until=0.0, rasters_done=0)

    def running_count(self) -> int:
        """Jobs this replica is running now."""
        with self._lock:
            return len(self._running)

    @property
    def store_writable(self) -> bool:
        """Whether the store took this replica's latest write (or, after a refusal, a probe since)."""
        with self._lock:
            return self._store_writable

    def _store_state(self, writable: bool, error: OSError | None = None) -> None:
        with self._lock:
            changed, self._store_writable = writable != self._store_writable, writable
        if not changed:
            return
        if writable:
            log.warning("the job store takes writes again; queue jobs resume")
        else:
            log.error("the job store refuses writes (%s); queue jobs wait until it takes them",
                      error.strerror if error else "")
        self.on_store_health(writable)

    # -- the store ---------------------------------------------------------
    def _expired(self, record: JobRecord, now: float) -> bool:
        return self.ttl_seconds > 0 and record.state in FINAL and now - record.update_time > self.ttl_seconds

    def _lease_held(self, record: JobRecord, now: float) -> bool:
        """Whether a RUNNING job's replica still holds it (see CLOCK_SLACK_SECONDS)."""
        return now <= record.lease_until <= now + self.lease_seconds + CLOCK_SLACK_SECONDS

    def _live_records(self) -> list[JobRecord]:
        records = []
        for job_id in self.store.live_ids():
            try:
                records.append(self.store.read(job_id))
            except DamagedRecord:
                continue  # moved aside by the read: it holds up no one else's job
        return sorted((r for r in records if r is not None), key=lambda r: r.create_time)

    def _queue(self, job_id: str) -> tuple[list[StoredPatch], dict]:
        # A SUCCEEDED job's queue never changes, so pages of it are served from memory.
        with self._lock:
            if job_id in self._queues:
                self._queues.move_to_end(job_id)
                return self._queues[job_id]
        queue = self.store.read_patches(job_id)
        with self._lock:
            self._queues[job_id] = queue
            while len(self._queues) > 8:
                self._queues.popitem(last=False)
        return queue

    # -- the workers -------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                record = self._claim()
                if record is not None:
                    self._run(record)
                    continue
            except StoreWriteError as error:
                self._store_state(False, error)
            except Exception:  # noqa: BLE001 - whatever fails, even in a job's own error path, the worker lives
                log.exception("a queue worker step failed; the worker goes on")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _claim(self) -> JobRecord | None:
        for candidate in self._live_records():
            now = self.clock()
            claimed: list[JobRecord] = []

            def change(r: JobRecord) -> JobRecord | None:
                if r.state in FINAL:
                    return r  # committing again clears a live mark left by a crash
                if r.state == "RUNNING" and self._lease_held(r, now):
                    return None
                if r.cancel_requested:
                    return with_changes(r, now, state="CANCELLED", holder="", lease_until=0.0)
                claimed.append(with_changes(r, now, state="RUNNING", holder=self.replica,
                                            lease_until=now + self.lease_seconds, rasters_done=0))
                return claimed[0]

            if self._stop.is_set():
                return None
            self.store.update(candidate.id, change)
            if claimed:
                self._store_state(True)
                with self._lock:
                    self._running.add(candidate.id)
                if candidate.state == "RUNNING":
                    log.warning("queue job %s taken over from %s, whose lease lapsed or lies implausibly far ahead",
                                candidate.id, candidate.holder)
                    self.on_take_over()
                return claimed[0]
        return None

    def _change_if_held(self, job_id: str, **changes) -> bool:
        """Commit ``changes`` if this replica still runs the job; whether it did."""
        changed: list[JobRecord] = []

        def change(r: JobRecord) -> JobRecord | None:
            if r.state != "RUNNING" or r.holder != self.replica:
                return None
            changed.append(with_changes(r, self.clock(), **changes))
            return changed[0]

        self.store.update(job_id, change)
        return bool(changed)

    def _held(self, job_id: str, **changes) -> None:
        """Commit progress if this replica still runs the job and is not stopping; JobLost otherwise."""
        if self._stop.is_set() or not self._change_if_held(job_id, **changes):
            raise JobLost()

    def _end(self, job_id: str, state: str, **changes) -> None:
        if self._change_if_held(job_id, state=state, holder="", lease_until=0.0, **changes):
            self.on_end(state)

    def _run(self, record: JobRecord) -> None:
        job_id = record.id

        def should_stop() -> None:
            current = self.store.read(job_id)
            if self._stop.is_set() or current is None or current.holder != self.replica:
                raise JobLost()
            if current.cancel_requested:
                raise JobCancelled()

        try:
            rank = self.plan(record.spec)
            found: list[StoredPatch] = []
            geos: dict[str, GeoReference | None] = {}
            for index, uri in enumerate(record.rasters):
                should_stop()
                patches, geos[uri] = rank(uri, should_stop)
                found += [StoredPatch(f"{index}-{p.window[0]}-{p.window[1]}", uri, p) for p in patches]
                if record.budget and len(found) > record.budget:
                    # Over thousands of rasters only the budget's best need be held (ties keep raster order).
                    found = heapq.nlargest(record.budget, found, key=_score)
                self._held(job_id, rasters_done=index + 1)
            should_stop()
            found.sort(key=_score, reverse=True)
            ranked = [replace(q, patch=replace(q.patch, rank=i + 1)) for i, q in enumerate(found)]
            # The queue is written before the state that announces it, so SUCCEEDED always has one.
            self.store.write_patches(job_id, ranked, geos)
            self._end(job_id, state="SUCCEEDED")
        except JobCancelled:
            self._end(job_id, state="CANCELLED")
        except JobLost:
            log.info("queue job %s left this replica", job_id)
        except StoreWriteError as error:
            # The store's fault, not the job's: the job stays as the store has it, and its lease lapses now
            # that this replica stops renewing it, so it runs again once the store takes writes.
            log.warning("queue job %s could not be saved (%s); it will run again", job_id, error.strerror)
            self._store_state(False, error)
        except Exception as error:  # noqa: BLE001 - a job's failure is reported on the job, not raised
            # The same client message a call would get: no internal class names, paths or stack traces.
            _, message, _ = status_for(error)
            log.warning("queue job %s failed: %s", job_id, message)
            self._end(job_id, state="FAILED", error_message=message)
        finally:
            with self._lock:
                self._running.discard(job_id)

    def _keep_leases(self) -> None:
        last_purge = 0.0
        while not self._stop.wait(self.lease_seconds / 4):
            now = self.clock()
            with self._lock:
                running = list(self._running)
            for job_id in running:
                try:
                    self.store.update(job_id, lambda r: replace(r, lease_until=now + self.lease_seconds)
                                      if r.state == "RUNNING" and r.holder == self.replica else None)
                except StoreWriteError as error:
                    self._store_state(False, error)
                except Exception:  # noqa: BLE001 - retried at the next renewal, well within the lease
                    log.exception("renewing the lease of queue job %s failed", job_id)
            if not self.store_writable:
                try:
                    self.store.probe_writable()
                    self._store_state(True)
                except OSError:
                    pass  # still refused; probed again at the next renewal
            if now - last_purge > min(60.0, self.ttl_seconds or 60.0):
                last_purge = now
                try:
                    self.forget_expired()
                except Exception:  # noqa: BLE001 - this thread also renews leases: it must live on
                    log.exception("forgetting expired queue jobs failed")

    def forget_expired(self) -> int:
        """Delete finished jobs idle for longer than the TTL; how many were deleted."""
        self.store.drop_stray_live_marks(older_than=time.time() - 60.0)
        deleted = 0
        for job_id in self.store.ids():
            try:
                with self.store.locked(job_id) as record:
                    if record is None or not self._expired(record, self.clock()):
                        continue
                    self.store.delete(job_id)
            except DamagedRecord:
                continue  # moved aside by the read
            deleted += 1
            with self._lock:
                self._queues.pop(job_id, None)
        return deleted
