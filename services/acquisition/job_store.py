"""Queue jobs on a folder that every Acquisition replica shares, so any replica answers for any job.

Layout of ``<root>/<id>/``:

* ``job.json`` -- the commit point: owner, spec, rasters, budget, state,
  progress, per-raster failures, error, timestamps, a cancel request, the
  request id it was created with, and the claims on its rasters (which
  replica ranks which raster, and until when its lease runs);
* ``rasters/<index>.json`` -- one finished raster's ranked patches (or why it
  failed), written before ``job.json`` counts it done, with the order in which
  it finished, so that a running job's pages never skip or repeat a patch;
* ``patches.json`` -- the ranked queue across the job, written before
  ``job.json`` says SUCCEEDED and never changed after;
* ``done.json`` -- the ids of the patches marked done;
* ``lock`` -- the file ``fcntl.flock`` serialises changes on, across replicas;
* ``owner`` -- the caller it belongs to, kept apart so that it survives damage to ``job.json``.

``<root>/live/<id>`` marks a job that is PENDING, RUNNING or CANCELLING, so
that finding work does not read every finished job the store still keeps.
``<root>/requests/<digest>`` names the job a caller's request id created, so
a retried create finds it (``requests/lock`` serialises creates that carry one).

A job whose ``job.json`` cannot be read is moved to ``<root>/quarantine/<id>/``
(see ``durable``), so that creating and running everyone else's jobs goes on;
writes the store refuses raise ``StoreWriteError``.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from dial.acquisition.ranking import RankedPatch
from dial.files import fsync_dir
from dial.imagery.georef import GeoReference, Window
from dial_services.common import durable
from dial_services.common.durable import DAMAGE, DamagedRecord, RecordStore, open_lock, writing

_ID = re.compile(r"^[0-9a-f]{16}$")
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


def is_job_id(text: str) -> bool:
    return bool(_ID.match(text))


@dataclass(frozen=True)
class JobRecord:
    """A queue job's durable state; ``spec`` is opaque bytes (the service's serialised request)."""

    id: str
    owner: str
    spec: bytes
    rasters: tuple[str, ...]
    budget: int
    create_time: float
    update_time: float
    state: str = "PENDING"
    rasters_done: int = 0
    error_message: str = ""
    cancel_requested: bool = False
    # (raster index, replica, lease end) of each raster claimed and not finished; a replica that stops hands
    # its claims back as (index, "", 0.0), so that every raster below next_index is either done or here.
    claims: tuple[tuple[int, str, float], ...] = ()
    next_index: int = 0
    # (raster index, reason) of each raster that could not be ranked.
    failures: tuple[tuple[int, str], ...] = ()
    request_id: str = ""
    request_digest: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"spec": base64.b64encode(self.spec).decode()}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "JobRecord":
        data = json.loads(text)
        if "holder" in data:
            # A record from before rasters were tasks: one lease for the whole job, progress in memory only.
            data = {k: v for k, v in data.items() if k not in ("holder", "lease_until")} | {"rasters_done": 0}
        return cls(**data | {"spec": base64.b64decode(data["spec"]), "rasters": tuple(data["rasters"]),
                             "claims": tuple((int(i), str(h), float(t)) for i, h, t in data.get("claims", ())),
                             "failures": tuple((int(i), str(r)) for i, r in data.get("failures", ()))})


@dataclass(frozen=True)
class StoredPatch:
    id: str
    raster_uri: str
    patch: RankedPatch


def _patch_to_json(q: StoredPatch) -> dict:
    p = q.patch
    return {"id": q.id, "uri": q.raster_uri, "rank": p.rank, "score": p.score, "window": list(p.window),
            "cost": p.estimated_click_cost, "hints": [list(h) for h in p.hints]}


def _patch_from_json(d: dict) -> StoredPatch:
    return StoredPatch(d["id"], d["uri"], RankedPatch(d["rank"], d["score"], Window(*d["window"]), d["cost"],
                                                      tuple(tuple(h) for h in d["hints"])))


class JobStore(RecordStore):
    record_file = "job.json"
    collection = "queueJobs"
    is_id = staticmethod(is_job_id)

    def __init__(self, root: str | Path):
        super().__init__(root)
        (self.root / "live").mkdir(parents=True, exist_ok=True)
        (self.root / "requests").mkdir(exist_ok=True)

    @contextlib.contextmanager
    def locked(self, job_id: str) -> Iterator[JobRecord | None]:
        """Hold the job's cross-replica lock; yields its record, or None when there is no such job."""
        if not is_job_id(job_id):  # never a path outside the store
            yield None
            return
        try:
            fd = open_lock(self.folder(job_id) / "lock")
        except FileNotFoundError:
            yield None
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self.read(job_id)
        finally:
            os.close(fd)

    def read(self, job_id: str) -> JobRecord | None:
        """The job, None when there is none; DamagedRecord (once it is moved aside) when it cannot be read."""
        return self._read(job_id, JobRecord.from_json)

    def _moved_aside(self, job_id: str) -> None:
        with contextlib.suppress(OSError):
            (self.root / "live" / job_id).unlink()

    def remove_leftovers(self, older_than: float) -> int:
        """As ``RecordStore.remove_leftovers``, and in each job's ``rasters/`` too."""
        removed = super().remove_leftovers(older_than)
        for job_id in self.ids():
            rasters = self.folder(job_id) / "rasters"
            if rasters.is_dir():
                removed += durable.remove_leftovers(rasters, older_than)
        return removed

    def probe_writable(self) -> None:
        durable.probe_writable(self.root)

    def create(self, record: JobRecord) -> None:
        """Write a whole job into a staging folder, then rename it into place and mark it live."""
        staging = self.root / f".staging-{record.id}"
        try:
            with writing():
                staging.mkdir()
                durable.atomic_write_bytes(staging / "job.json", record.to_json().encode())
                durable.write_owner(staging, record.owner)
                (staging / "lock").touch()
                # Live mark first: a crash before the rename leaves a mark without a job, which finding work
                # skips, never a job that no replica would ever start.
                (self.root / "live" / record.id).touch()
                os.replace(staging, self.folder(record.id))
                fsync_dir(self.root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def commit(self, record: JobRecord) -> JobRecord:
        """Make ``record`` the job's state; call with its lock held."""
        with writing():
            durable.atomic_write_bytes(self.folder(record.id) / "job.json", record.to_json().encode())
        if record.state in FINAL:
            with contextlib.suppress(FileNotFoundError):
                (self.root / "live" / record.id).unlink()
        return record

    def update(self, job_id: str, change: Callable[[JobRecord], JobRecord | None]) -> JobRecord | None:
        """Apply ``change`` under the lock; it returns the new record, or None to leave the job as it is."""
        with self.locked(job_id) as record:
            if record is None:
                return None
            changed = change(record)
            return record if changed is None else self.commit(changed)

    def live_ids(self) -> list[str]:
        return sorted(name for name in os.listdir(self.root / "live") if is_job_id(name))

    def drop_stray_live_marks(self, older_than: float) -> int:
        """Remove live marks of jobs that never came to be (a crash inside ``create``), once older than
        ``older_than`` (a time), so that no create still in progress on another replica loses its mark."""
        dropped = 0
        for job_id in self.live_ids():
            mark = self.root / "live" / job_id
            with contextlib.suppress(FileNotFoundError):
                if not self.folder(job_id).exists() and mark.stat().st_mtime < older_than:
                    mark.unlink()
                    dropped += 1
        return dropped

    def ids(self) -> list[str]:
        return [name for name in os.listdir(self.root) if is_job_id(name)]

    # -- request ids -------------------------------------------------------
    @contextlib.contextmanager
    def requests_locked(self) -> Iterator[None]:
        """Hold the lock that makes "find the job of this request id, else create it" one step across
        replicas."""
        fd = open_lock(self.root / "requests" / "lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _request_path(self, owner: str, request_id: str) -> Path:
        # Hashed: request ids are the caller's text, never a path.
        return self.root / "requests" / hashlib.sha256(f"{owner}\0{request_id}".encode()).hexdigest()

    def request_job(self, owner: str, request_id: str) -> str | None:
        """The id of the job ``owner`` created with ``request_id``, if any; call with requests_locked."""
        try:
            job_id = self._request_path(owner, request_id).read_text().strip()
        except FileNotFoundError:
            return None
        return job_id if is_job_id(job_id) else None

    def write_request(self, owner: str, request_id: str, job_id: str) -> None:
        with writing():
            durable.atomic_write_bytes(self._request_path(owner, request_id), job_id.encode())

    def forget_request(self, owner: str, request_id: str, job_id: str) -> None:
        """Drop the request id's entry if it still names ``job_id``."""
        with self.requests_locked():
            if self.request_job(owner, request_id) == job_id:
                with contextlib.suppress(FileNotFoundError):
                    self._request_path(owner, request_id).unlink()

    # -- finished rasters --------------------------------------------------
    def write_result(self, job_id: str, index: int, result: "RasterResult") -> None:
        """One finished raster; call with the job's lock held, before committing it as done."""
        folder = self.folder(job_id) / "rasters"
        body = {"seq": result.seq, "uri": result.uri, "failure": result.failure,
                "geo": result.geo.to_json() if result.geo is not None else None,
                "patches": [_patch_to_json(q) for q in result.patches]}
        with writing():
            folder.mkdir(exist_ok=True)
            durable.atomic_write_bytes(folder / f"{index}.json", json.dumps(body).encode())

    def result_indexes(self, job_id: str) -> list[int]:
        try:
            names = os.listdir(self.folder(job_id) / "rasters")
        except FileNotFoundError:
            return []
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def read_result(self, job_id: str, index: int) -> "RasterResult":
        try:
            body = json.loads((self.folder(job_id) / "rasters" / f"{index}.json").read_text())
            geo = GeoReference.from_json(body["geo"]) if body["geo"] is not None else None
            return RasterResult(index, body["seq"], body["uri"], [_patch_from_json(d) for d in body["patches"]],
                                geo, body["failure"])
        except DAMAGE:
            raise DamagedRecord(f"queueJobs/{job_id}", None) from None

    # -- the queue ---------------------------------------------------------
    def write_patches(self, job_id: str, patches: list[StoredPatch], geos: dict[str, GeoReference | None]) -> None:
        """The queue, and each raster's georeference (None when it has none), by raster URI."""
        body = {"geos": {uri: geo.to_json() if geo is not None else None for uri, geo in geos.items()},
                "patches": [_patch_to_json(q) for q in patches]}
        with writing():
            durable.atomic_write_bytes(self.folder(job_id) / "patches.json", json.dumps(body).encode())

    def read_patches(self, job_id: str) -> tuple[list[StoredPatch], dict[str, GeoReference | None]]:
        """The job's queue; DamagedRecord when it cannot be read (the job itself is left as it is)."""
        try:
            body = json.loads((self.folder(job_id) / "patches.json").read_text())
            geos = {uri: GeoReference.from_json(geo) if geo is not None else None for uri, geo in body["geos"].items()}
            return [_patch_from_json(d) for d in body["patches"]], geos
        except DAMAGE:
            raise DamagedRecord(f"queueJobs/{job_id}", None) from None

    def read_done(self, job_id: str) -> set[str]:
        try:
            return set(json.loads((self.folder(job_id) / "done.json").read_text()))
        except FileNotFoundError:
            return set()
        except DAMAGE:
            raise DamagedRecord(f"queueJobs/{job_id}", None) from None

    def write_done(self, job_id: str, done: set[str]) -> None:
        """Call with the job's lock held."""
        with writing():
            durable.atomic_write_bytes(self.folder(job_id) / "done.json", json.dumps(sorted(done)).encode())

    def delete(self, job_id: str) -> None:
        """Remove a job; the rename makes the removal atomic for readers on other replicas."""
        trash = self.root / f".deleted-{job_id}-{uuid.uuid4().hex[:8]}"
        with writing():
            with contextlib.suppress(FileNotFoundError):
                (self.root / "live" / job_id).unlink()
            try:
                os.replace(self.folder(job_id), trash)
            except FileNotFoundError:
                return
        shutil.rmtree(trash, ignore_errors=True)


@dataclass(frozen=True)
class RasterResult:
    """One finished raster of a job: its patches, ranked within it (``seq`` is the order it finished in),
    or ``failure``, why it could not be ranked."""

    index: int
    seq: int
    uri: str
    patches: list[StoredPatch]
    geo: GeoReference | None
    failure: str | None = None


def with_changes(record: JobRecord, now: float, **changes) -> JobRecord:
    return replace(record, update_time=now, **changes)
