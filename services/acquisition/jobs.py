"""Queue jobs: rank patches over many rasters in background threads.

A job owns its state behind a lock; workers only move it forward
(PENDING -> RUNNING -> SUCCEEDED | FAILED | CANCELLED). Cancellation is
cooperative: it is noticed between rasters and between the stages of one,
so a cancelled job stops within one raster's ranking time. Ranks are final
only once every raster is done, because a later raster may hold better
patches; hence patches are listed only from SUCCEEDED jobs.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Callable, Sequence

from dial.acquisition.ranking import RankedPatch

log = logging.getLogger(__name__)


class JobState(Enum):
    PENDING = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    CANCELLED = 5


FINAL = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class JobCancelled(Exception):
    """Raised inside a worker when its job has been asked to stop."""


@dataclass(frozen=True)
class QueuedPatch:
    id: str
    raster_uri: str
    patch: RankedPatch


@dataclass
class Job:
    id: str
    spec: object
    rasters: tuple[str, ...]
    budget: int
    state: JobState = JobState.PENDING
    rasters_done: int = 0
    error_message: str = ""
    create_time: float = field(default_factory=time.time)
    update_time: float = field(default_factory=time.time)
    patches: list[QueuedPatch] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return f"queueJobs/{self.id}"

    def snapshot(self) -> "Job":
        with self.lock:
            return replace(self, patches=list(self.patches), done=set(self.done))

    def _set(self, **changes) -> None:
        with self.lock:
            for key, value in changes.items():
                setattr(self, key, value)
            self.update_time = time.time()


# rank(raster_uri, should_stop) -> ranked patches of that raster, best first
RankRaster = Callable[[str, Callable[[], None]], Sequence[RankedPatch]]


class JobManager:
    def __init__(self, workers: int = 1):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="queue-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def create(self, spec: object, rasters: Sequence[str], budget: int, rank: RankRaster) -> Job:
        job = Job(uuid.uuid4().hex[:16], spec, tuple(rasters), budget)
        with self._lock:
            self._jobs[job.id] = job
        self._executor.submit(self._run, job, rank)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job: Job) -> None:
        job.cancel.set()
        with job.lock:
            if job.state == JobState.PENDING:
                job.state, job.update_time = JobState.CANCELLED, time.time()

    def _run(self, job: Job, rank: RankRaster) -> None:
        def should_stop() -> None:
            if job.cancel.is_set():
                raise JobCancelled()

        with job.lock:
            if job.state != JobState.PENDING:
                return
            job.state, job.update_time = JobState.RUNNING, time.time()
        try:
            found: list[QueuedPatch] = []
            for index, uri in enumerate(job.rasters):
                should_stop()
                for patch in rank(uri, should_stop):
                    r, c, _, _ = patch.window
                    found.append(QueuedPatch(f"{index}-{r}-{c}", uri, patch))
                job._set(rasters_done=index + 1)
            should_stop()
            found.sort(key=lambda q: -q.patch.score)
            if job.budget:
                found = found[: job.budget]
            ranked = [replace(q, patch=replace(q.patch, rank=i + 1)) for i, q in enumerate(found)]
            job._set(patches=ranked, state=JobState.SUCCEEDED)
        except JobCancelled:
            job._set(state=JobState.CANCELLED)
        except Exception as error:  # noqa: BLE001 - a job's failure is reported on the job, not raised
            log.exception("queue job %s failed", job.id)
            job._set(state=JobState.FAILED, error_message=f"{type(error).__name__}: {error}")

    def page(self, job: Job, page_size: int, after_rank: int) -> tuple[list[QueuedPatch], int | None]:
        """Patches not yet done with rank > ``after_rank``; the rank to continue after, or None at the end."""
        with job.lock:
            remaining = [q for q in job.patches if q.patch.rank > after_rank and q.id not in job.done]
        page = remaining[:page_size]
        more = len(remaining) > page_size
        return page, (page[-1].patch.rank if more and page else None)

    def mark_done(self, job: Job, ids: Sequence[str]) -> tuple[int, list[str]]:
        """(newly marked, unknown ids); nothing is marked when any id is unknown."""
        with job.lock:
            known = {q.id for q in job.patches}
            unknown = [i for i in ids if i not in known]
            if unknown:
                return 0, unknown
            new = set(ids) - job.done
            job.done |= new
            job.update_time = time.time()
            return len(new), []

    def close(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
