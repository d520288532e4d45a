"""Queue jobs: rank patches over many rasters in background workers, on every replica at once.

Jobs live in the shared :class:`JobStore`, so every replica answers for every
job. A job's rasters are its tasks: each replica runs a few worker threads
that claim the next raster of the oldest live job, rank it, and save its
patches before counting it done, so one big job keeps every replica busy.
A claim holds a lease that its replica renews while it works; a replica that
stops hands its claims back, and the leases of one that dies lapse, so
another replica takes those rasters, and only those: a job taken over resumes
from its finished rasters, it does not start again. A raster that cannot be
ranked is recorded as failed, with the reason a call would get, and the job
goes on. Cancellation is a flag on the job that each claim's replica notices
between rasters and between the stages of one; the job is CANCELLING until
the last of them has stopped. Ranks across the job are final only once every
raster is done, because a later raster may hold better patches; until then
the patches of finished rasters are paged in the order those finished.

Workers outlive whatever goes wrong. A store that refuses writes (full,
read-only) leaves jobs as they are, to run once it takes writes again, and is
reported through ``on_store_health`` (health and metrics); a job whose record
is damaged is moved aside and holds up no other job.
"""
from __future__ import annotations

import contextlib
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
from dial.errors import AlreadyExists, Exhausted
from dial.imagery.georef import GeoReference
from dial_services.acquisition.job_store import (FINAL, JobRecord, JobStore, RasterResult, StoredPatch, new_job_id,
                                                 with_changes)
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


class RequestConflict(AlreadyExists):
    """A request id the caller already used, for a job with another spec."""

    def __init__(self, request_id: str, job_id: str):
        super().__init__(f"request_id {request_id!r} was already used for queueJobs/{job_id} with a different "
                         "spec; send a new request_id to create another job, or the same spec to get that one")


class TooManyJobs(Exhausted):
    """A caller already has the most live jobs one caller may have."""

    def __init__(self, owner: str, live: int, most: int):
        super().__init__(f"{owner} has {live} queue jobs pending or running, the most one caller may have "
                         f"({most}); wait for one to finish or cancel one")
        self.live = live



# A claim's raster index standing for "every raster is done: merge them into the job's queue".
FINISH = -1


class JobManager:
    def __init__(self, store: JobStore, plan: Plan, *, workers: int = 1, ttl_seconds: float = 24 * 3600.0,
                 max_live_per_owner: int = 16, lease_seconds: float = 60.0, poll_seconds: float = 2.0,
                 clock: Callable[[], float] = time.time, replica: str | None = None,
                 on_end: Callable[[str], None] = lambda state: None, on_take_over: Callable[[], None] = lambda: None,
                 on_store_health: Callable[[bool], None] = lambda writable: None):
        """``on_end(state)`` is told of each job this replica ends, ``on_take_over()`` of each raster it
        takes over from a replica whose lease lapsed (both for metrics), ``on_store_health(writable)`` each
        time the store stops or starts taking writes (for health)."""
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
        # (job id, raster index) of each raster this replica is ranking now.
        self._running: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._queues: OrderedDict[str, tuple[list[StoredPatch], dict]] = OrderedDict()
        # Finished rasters never change, so a running job's pages read each one once (a few jobs' worth).
        self._results: OrderedDict[str, dict[int, RasterResult]] = OrderedDict()
        self._workers = workers
        self._store_writable = True
        self.on_store_health = on_store_health

    def start(self, on_store_health: Callable[[bool], None] | None = None) -> "JobManager":
        """Start taking rasters from the store: once this replica serves, not before (and, as health lives
        on the server, ``on_store_health`` may be given only now)."""
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
    def create(self, owner: str, spec: bytes, rasters: Sequence[str], budget: int, *, request_id: str = "",
               request_digest: str = "") -> JobRecord:
        """A new PENDING job; TooManyJobs when ``owner`` already has the most live jobs allowed.

        With a ``request_id``, the job ``owner`` already created with it when there is one and its
        ``request_digest`` (what identifies the request's spec) is the same; RequestConflict when it is not.
        """
        try:
            with self._lock, (self.store.requests_locked() if request_id else contextlib.nullcontext()):
                if request_id:
                    earlier = self._created_for(owner, request_id)
                    if earlier is not None:
                        if earlier.request_digest != request_digest:
                            raise RequestConflict(request_id, earlier.id)
                        return earlier
                # Exact on one replica; replicas racing may admit one or two over. A job just ended may keep
                # its live mark a moment (it goes after the commit); it is not live.
                live = sum(1 for r in self._live_records() if r.owner == owner and r.state not in FINAL)
                if live >= self.max_live_per_owner:
                    raise TooManyJobs(owner, live, self.max_live_per_owner)
                now = self.clock()
                record = JobRecord(new_job_id(), owner, spec, tuple(rasters), budget, now, now,
                                   request_id=request_id, request_digest=request_digest)
                self.store.create(record)
                if request_id:
                    self.store.write_request(owner, request_id, record.id)
        except StoreWriteError as error:
            self._store_state(False, error)
            raise
        self._store_state(True)
        self._wake.set()
        return record

    def _created_for(self, owner: str, request_id: str) -> JobRecord | None:
        job_id = self.store.request_job(owner, request_id)
        if job_id is None:
            return None
        try:
            record = self.get(job_id, owner)
        except DamagedRecord:
            return None  # its owner is told DATA_LOSS by name; a retried create makes a usable job
        return record if record is not None and record.request_id == request_id else None

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

    def list_jobs(self, owner: str, page_size: int, after: tuple[float, str] | None = None
             ) -> tuple[list[JobRecord], tuple[float, str] | None]:
        """``owner``'s jobs, newest first, from after ``after`` (a (create_time, id) a previous page ended
        on), and where the next page starts (None on the last). Damaged and expired jobs are left out."""
        mine = []
        now = self.clock()
        for job_id in self.store.ids():
            try:
                record = self.store.read(job_id)
            except DamagedRecord:
                continue
            if record is not None and record.owner == owner and not self._expired(record, now):
                key = (record.create_time, record.id)
                if after is None or key < after:
                    mine.append(record)
        mine.sort(key=lambda r: (r.create_time, r.id), reverse=True)
        page = mine[:page_size]
        return page, ((page[-1].create_time, page[-1].id) if len(mine) > page_size else None)

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
        """Cancel a job that no replica is ranking a raster of at once; ask a running one to stop: it is
        CANCELLING until each replica ranking one of its rasters has noticed (within one stage)."""
        def change(r: JobRecord) -> JobRecord | None:
            now = self.clock()
            if r.state in FINAL:
                return None
            if not self._live_claims(r, now):
                # No replica ranks any of its rasters (or their holders died): nobody would notice a request.
                return with_changes(r, now, state="CANCELLED", cancel_requested=True, claims=())
            if r.cancel_requested:
                return None
            return with_changes(r, now, state="CANCELLING", cancel_requested=True)

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

    def page_finished(self, record: JobRecord, page_size: int, after: tuple[int, int] = (-1, 0)
                      ) -> tuple[list[StoredPatch], dict, tuple[int, int]]:
        """Patches of the rasters finished so far, in the order those finished and each raster's best first
        (``patch.rank`` is the rank within its raster), from after ``after`` (the (finish order, rank) a
        previous page ended on); the rasters' georeferences; and where to continue, which a later call
        given it picks up from, rasters finished since included."""
        results = self._finished(record.id)
        done = self.store.read_done(record.id)
        geos = {r.uri: r.geo for r in results}
        page = []
        for result in results:
            if result.seq < after[0]:
                continue
            for q in result.patches:
                if (result.seq, q.patch.rank) > after and q.id not in done:
                    page.append((result.seq, q))
                    if len(page) == page_size:
                        return [q for _, q in page], geos, (page[-1][0], page[-1][1].patch.rank)
        return [q for _, q in page], geos, ((page[-1][0], page[-1][1].patch.rank) if page else after)

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
        """Stop taking rasters and hand back the ones being ranked here, so another replica takes them at
        once; a job no replica works on any more is PENDING again."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            running = list(self._running)
        for job_id, index in running:
            def change(r: JobRecord, index=index) -> JobRecord | None:
                if r.state in FINAL or not self._holds(r, index):
                    return None
                claims = tuple((i, "", 0.0) if i == index else (i, h, t) for i, h, t in r.claims)
                handed_back = replace(r, claims=claims)
                if self._live_claims(handed_back, self.clock()):
                    return with_changes(handed_back, self.clock())
                if r.cancel_requested:
                    return with_changes(handed_back, self.clock(), state="CANCELLED", claims=())
                return with_changes(handed_back, self.clock(), state="PENDING")

            try:
                self.store.update(job_id, change)
            except OSError as error:  # its lease lapses instead
                log.warning("cannot hand queue job %s back: %s", job_id, error.strerror)

    def running_count(self) -> int:
        """Jobs this replica is ranking a raster of now."""
        with self._lock:
            return len({job_id for job_id, _ in self._running})

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

    def _lease_held(self, lease_until: float, now: float) -> bool:
        """Whether a claim whose lease ends at ``lease_until`` is still held (see CLOCK_SLACK_SECONDS)."""
        return now <= lease_until <= now + self.lease_seconds + CLOCK_SLACK_SECONDS

    def _live_claims(self, record: JobRecord, now: float) -> list[tuple[int, str, float]]:
        return [c for c in record.claims if c[1] and self._lease_held(c[2], now)]

    def _holds(self, record: JobRecord, index: int) -> bool:
        return any(i == index and h == self.replica for i, h, _ in record.claims)

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

    def _finished(self, job_id: str) -> list[RasterResult]:
        """The job's finished rasters, in the order they finished."""
        with self._lock:
            known = dict(self._results.get(job_id, {}))
        for index in self.store.result_indexes(job_id):
            if index not in known:
                known[index] = self.store.read_result(job_id, index)
        with self._lock:
            self._results[job_id] = known
            self._results.move_to_end(job_id)
            while len(self._results) > 8:
                self._results.popitem(last=False)
        return sorted(known.values(), key=lambda r: (r.seq, r.index))

    # -- the workers -------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                claimed = self._claim()
                if claimed is not None:
                    record, index = claimed
                    if index == FINISH:
                        self._finish(record.id)
                    else:
                        self._run(record, index)
                    continue
            except StoreWriteError as error:
                self._store_state(False, error)
            except Exception:  # noqa: BLE001 - whatever fails, even in a job's own error path, the worker lives
                log.exception("a queue worker step failed; the worker goes on")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _claim(self) -> tuple[JobRecord, int] | None:
        """The next raster to rank, of the live job with the fewest rasters being ranked (the oldest of
        those): a raster handed back or whose holder's lease lapsed first, then the next not yet claimed; or
        FINISH for a job whose rasters are all done but that is not yet merged (its merge was refused by the
        store)."""
        now = self.clock()
        # The job with the fewest rasters being ranked first, then the oldest: one big job takes every worker
        # only while no other job waits, so a caller's small job is not queued behind another's thousands.
        for candidate in sorted(self._live_records(), key=lambda r: len(self._live_claims(r, now))):
            now = self.clock()
            claimed: list[tuple[JobRecord, int, str]] = []

            def change(r: JobRecord) -> JobRecord | None:
                if r.state in FINAL:
                    return r  # committing again clears a live mark left by a crash
                live = self._live_claims(r, now)
                if r.cancel_requested:
                    return None if live else with_changes(r, now, state="CANCELLED", claims=())
                if r.rasters_done >= len(r.rasters):
                    claimed.append((r, FINISH, ""))
                    return None
                lapsed = [c for c in r.claims if c not in live]
                if lapsed:
                    index, previous, _ = lapsed[0]
                    next_index = r.next_index
                elif r.next_index < len(r.rasters):
                    index, previous, next_index = r.next_index, "", r.next_index + 1
                else:
                    return None  # every raster left is being ranked by a live replica
                claims = tuple(c for c in r.claims if c[0] != index) + ((index, self.replica,
                                                                        now + self.lease_seconds),)
                changed = with_changes(r, now, state="RUNNING", claims=claims, next_index=next_index)
                claimed.append((changed, index, previous))
                return changed

            if self._stop.is_set():
                return None
            self.store.update(candidate.id, change)
            if claimed:
                record, index, previous = claimed[0]
                self._store_state(True)
                if index == FINISH:
                    return record, index
                with self._lock:
                    self._running.add((record.id, index))
                if previous:
                    log.warning("raster %d of queue job %s taken over from %s, whose lease lapsed or lies "
                                "implausibly far ahead", index, record.id, previous)
                    self.on_take_over()
                return record, index
        return None

    def _release(self, job_id: str, index: int, result: RasterResult | None = None) -> JobRecord | None:
        """Drop this replica's claim on raster ``index``, saving its ``result`` (None: it stopped
        unfinished); the job committed, or None when this replica no longer held the claim. A cancelled job
        whose last claim this was ends CANCELLED."""
        ended: list[str] = []
        committed: list[JobRecord] = []

        def change(r: JobRecord) -> JobRecord | None:
            if r.state in FINAL or not self._holds(r, index):
                return None
            now = self.clock()
            claims = tuple(c for c in r.claims if c[0] != index)
            changes: dict = {"claims": claims}
            if result is not None:
                self.store.write_result(job_id, index, replace(result, seq=r.rasters_done))
                changes["rasters_done"] = r.rasters_done + 1
                if result.failure is not None:
                    changes["failures"] = tuple(sorted(r.failures + ((index, result.failure),)))
            else:
                # Unfinished: handed back for another worker, unless the job stops.
                changes["claims"] = claims + ((index, "", 0.0),)
            if r.cancel_requested and not self._live_claims(replace(r, claims=claims), now):
                changes |= {"state": "CANCELLED", "claims": ()}
                ended.append("CANCELLED")
            committed.append(with_changes(r, now, **changes))
            return committed[0]

        self.store.update(job_id, change)
        for state in ended:
            self.on_end(state)
        return committed[0] if committed else None

    def _fail(self, job_id: str, index: int, message: str) -> None:
        """End the whole job FAILED (its model cannot be used), if this replica still holds ``index``."""
        failed: list[JobRecord] = []

        def change(r: JobRecord) -> JobRecord | None:
            if r.state in FINAL or not self._holds(r, index):
                return None
            failed.append(with_changes(r, self.clock(), state="FAILED", error_message=message, claims=()))
            return failed[0]

        self.store.update(job_id, change)
        if failed:
            self.on_end("FAILED")

    def _run(self, record: JobRecord, index: int) -> None:
        job_id, uri = record.id, record.rasters[index]

        def should_stop() -> None:
            current = self.store.read(job_id)
            if self._stop.is_set() or current is None or not self._holds(current, index):
                raise JobLost()
            if current.cancel_requested:
                raise JobCancelled()

        try:
            try:
                rank = self.plan(record.spec)
            except Exception as error:  # noqa: BLE001 - no raster can be ranked: the job fails, reported on it
                _, message, _ = status_for(error)
                log.warning("queue job %s failed: %s", job_id, message)
                self._fail(job_id, index, message)
                return
            try:
                should_stop()
                patches, geo = rank(uri, should_stop)
                result = RasterResult(index, 0, uri, [StoredPatch(f"{index}-{p.window[0]}-{p.window[1]}", uri, p)
                                                      for p in patches], geo)
            except (JobCancelled, JobLost, StoreWriteError):
                raise
            except Exception as error:  # noqa: BLE001 - one raster's failure is recorded; the job goes on
                # The same client message a call would get: no internal class names, paths or stack traces.
                _, message, _ = status_for(error)
                log.warning("raster %d (%s) of queue job %s failed: %s", index, uri, job_id, message)
                result = RasterResult(index, 0, uri, [], None, message)
            committed = self._release(job_id, index, result)
            if committed is None:
                raise JobLost()
            if committed.state not in FINAL and committed.rasters_done >= len(committed.rasters):
                self._finish(job_id)
        except JobCancelled:
            self._release(job_id, index)
        except JobLost:
            log.info("raster %d of queue job %s left this replica", index, job_id)
        except StoreWriteError as error:
            # The store's fault, not the job's: the job stays as the store has it, and this claim's lease
            # lapses now that this replica stops renewing it, so the raster is ranked again once the store
            # takes writes.
            log.warning("raster %d of queue job %s could not be saved (%s); it will be ranked again", index,
                        job_id, error.strerror)
            self._store_state(False, error)
        finally:
            with self._lock:
                self._running.discard((job_id, index))

    def _finish(self, job_id: str) -> None:
        """Merge a job whose rasters are all done into its ranked queue: SUCCEEDED, or FAILED when every
        raster failed."""
        ended: list[str] = []

        def change(r: JobRecord) -> JobRecord | None:
            if r.state in FINAL or r.rasters_done < len(r.rasters) or r.cancel_requested:
                return None
            results = sorted((self.store.read_result(job_id, i) for i in range(len(r.rasters))),
                             key=lambda result: result.index)
            found = (q for result in results for q in result.patches)
            # Over thousands of rasters only the budget's best need be held (ties keep raster order).
            best = heapq.nlargest(r.budget, found, key=_score) if r.budget else sorted(found, key=_score,
                                                                                      reverse=True)
            ranked = [replace(q, patch=replace(q.patch, rank=i + 1)) for i, q in enumerate(best)]
            # The queue is written before the state that announces it, so SUCCEEDED always has one.
            self.store.write_patches(job_id, ranked, {res.uri: res.geo for res in results if res.failure is None})
            now = self.clock()
            if len(r.failures) < len(r.rasters):
                ended.append("SUCCEEDED")
                return with_changes(r, now, state="SUCCEEDED", claims=())
            ended.append("FAILED")
            first = r.failures[0][1]
            message = first if len(r.rasters) == 1 else (f"every one of the {len(r.rasters)} rasters failed "
                                                         f"(see failures); the first: {first}")
            return with_changes(r, now, state="FAILED", error_message=message, claims=())

        self.store.update(job_id, change)
        for state in ended:
            self.on_end(state)

    def _keep_leases(self) -> None:
        last_purge = 0.0
        while not self._stop.wait(self.lease_seconds / 4):
            now = self.clock()
            with self._lock:
                running = list(self._running)
            for job_id, index in running:
                def renew(r: JobRecord, index=index) -> JobRecord | None:
                    if r.state in FINAL or not self._holds(r, index):
                        return None
                    return replace(r, claims=tuple((i, h, now + self.lease_seconds) if i == index and
                                                   h == self.replica else (i, h, t) for i, h, t in r.claims))

                try:
                    self.store.update(job_id, renew)
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
        """Delete finished jobs idle for longer than the TTL, and their request ids; how many were deleted."""
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
            if record.request_id:
                self.store.forget_request(record.owner, record.request_id, job_id)
            deleted += 1
            with self._lock:
                self._queues.pop(job_id, None)
                self._results.pop(job_id, None)
        return deleted
