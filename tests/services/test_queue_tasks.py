"""A queue job's rasters as tasks in the shared job store: every replica takes some, a replica that dies
leaves only its unfinished raster to another, one failing raster does not fail the job, pages of a running
job never skip or repeat a patch, and cancelling says CANCELLING until the last raster has stopped."""
from __future__ import annotations

import threading
import time

import pytest

from dial.acquisition.ranking import RankedPatch
from dial.imagery.georef import GeoReference
from dial_services.acquisition.job_store import JobStore
from dial_services.acquisition.jobs import JobManager, RequestConflict
from dial_services.common.errors import invalid_argument
from tests.support.queue_jobs import eventually, wait_state

GEO = GeoReference("EPSG:32633", (0.5, 0, 0, 0, -0.5, 0))


def two_patches(uri: str) -> list[RankedPatch]:
    score = float(len(uri))
    return [RankedPatch(1, score, (0, 0, 8, 8), 2.0, ()), RankedPatch(2, score / 10, (8, 0, 8, 8), 2.0, ())]


@pytest.fixture()
def managers(tmp_path):
    made = []

    def make(rank, **options):
        options = {"poll_seconds": 0.02, "lease_seconds": 5.0} | options
        manager = JobManager(JobStore(tmp_path / "jobs"), lambda spec: rank, **options).start()
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()


def test_every_replica_takes_rasters_of_one_big_job(managers):
    ranked_by: dict[str, list[str]] = {}
    both_busy = threading.Barrier(2, timeout=10)

    def ranker(name):
        def rank(uri, should_stop):
            ranked_by.setdefault(name, []).append(uri)
            if uri in ("r0", "r1"):
                both_busy.wait()  # the first two rasters are ranked at the same time, on two replicas
            return two_patches(uri), GEO
        return rank

    a = managers(ranker("a"))
    b = managers(ranker("b"))
    job = a.create("alice", b"spec", [f"r{i}" for i in range(8)], budget=0)
    done = wait_state(a, job.id, {"SUCCEEDED"})
    assert done.rasters_done == 8 and done.claims == () and done.failures == ()
    assert ranked_by["a"] and ranked_by["b"], ranked_by
    assert sorted(ranked_by["a"] + ranked_by["b"]) == sorted(f"r{i}" for i in range(8))  # none twice
    page, _, _ = b.page(b.get(job.id, "alice"), 100, 0)
    assert len(page) == 16 and [q.patch.rank for q in page] == list(range(1, 17))


def test_a_job_whose_replica_died_resumes_from_its_finished_rasters(managers):
    dying = threading.Event()

    def rank_then_die(uri, should_stop):
        if uri == "r2":
            dying.set()
            threading.Event().wait()  # killed here: it never returns, never renews, never hands back
        return two_patches(uri), GEO

    a = managers(rank_then_die, lease_seconds=1.0)
    job = a.create("alice", b"spec", [f"r{i}" for i in range(5)], budget=0)
    assert dying.wait(10)
    a._stop.set()  # what kill -9 leaves: the lease of raster 2 runs out, no claim is handed back
    mid = a.store.read(job.id)
    assert mid.rasters_done == 2 and [c[0] for c in mid.claims] == [2]
    taken_over, survivor_ranked = [], []

    def survivor(uri, should_stop):
        survivor_ranked.append(uri)
        return two_patches(uri), GEO

    b = managers(survivor, lease_seconds=1.0, on_take_over=lambda: taken_over.append(1))
    done = wait_state(b, job.id, {"SUCCEEDED"})
    assert sorted(survivor_ranked) == ["r2", "r3", "r4"]  # not r0 or r1 again
    assert taken_over == [1] and done.rasters_done == 5
    assert {q.raster_uri for q in b.page(done, 100, 0)[0]} == {f"r{i}" for i in range(5)}


def test_a_bad_raster_is_listed_as_failed_and_the_job_goes_on(managers):
    def rank(uri, should_stop):
        if uri == "bad.tif":
            raise invalid_argument([("spec.rasters[1].uri", "bad.tif has 1 band; the model reads 3")])
        if uri == "odd.tif":
            raise ValueError("/srv/private/odd.tif: unexpected")
        return two_patches(uri), GEO

    ended = []
    a = managers(rank, on_end=ended.append)
    job = a.create("alice", b"spec", ["good.tif", "bad.tif", "odd.tif", "fine.tif"], budget=0)
    done = wait_state(a, job.id, {"SUCCEEDED", "FAILED"})
    assert (done.state, done.rasters_done, done.error_message) == ("SUCCEEDED", 4, "")
    reasons = dict(done.failures)
    assert sorted(reasons) == [1, 2]
    assert reasons[1] == "invalid request: spec.rasters[1].uri: bad.tif has 1 band; the model reads 3"
    assert reasons[2].startswith("internal error (request id ")
    assert not any("Error" in r or "/srv/private" in r for r in reasons.values())
    assert {q.raster_uri for q in a.page(done, 100, 0)[0]} == {"good.tif", "fine.tif"}
    assert eventually(lambda: ended == ["SUCCEEDED"]), ended


def test_a_job_whose_every_raster_fails_fails_naming_the_first(managers):
    def rank(uri, should_stop):
        raise invalid_argument([("spec.rasters[0].uri", f"{uri} is not a GeoTIFF")])

    a = managers(rank)
    failed = wait_state(a, a.create("alice", b"spec", ["a.png", "b.png"], budget=0).id, {"FAILED"})
    assert len(failed.failures) == 2
    assert failed.error_message == ("every one of the 2 rasters failed (see failures); the first: "
                                    "invalid request: spec.rasters[0].uri: a.png is not a GeoTIFF")


def test_a_running_jobs_pages_follow_its_finished_rasters_without_skipping_or_repeating(managers):
    gates = {uri: threading.Event() for uri in ("r0", "r1", "r2")}

    def rank(uri, should_stop):
        gates[uri].wait(10)
        return two_patches(uri), GEO

    a = managers(rank)
    job = a.create("alice", b"spec", ["r0", "r1", "r2"], budget=0)
    assert a.page_finished(a.get(job.id, "alice"), 10)[0] == []
    gates["r0"].set()
    assert eventually(lambda: a.store.read(job.id).rasters_done == 1)
    first, geos, position = a.page_finished(a.get(job.id, "alice"), 1)
    assert [(q.raster_uri, q.patch.rank) for q in first] == [("r0", 1)] and geos["r0"] == GEO
    second, _, position = a.page_finished(a.get(job.id, "alice"), 10, position)
    assert [(q.raster_uri, q.patch.rank) for q in second] == [("r0", 2)]
    assert a.page_finished(a.get(job.id, "alice"), 10, position)[0] == []  # nothing new yet, same position
    gates["r1"].set()
    gates["r2"].set()
    wait_state(a, job.id, {"SUCCEEDED"})
    rest, _, _ = a.page_finished(a.get(job.id, "alice"), 10, position)
    assert sorted((q.raster_uri, q.patch.rank) for q in rest) == [("r1", 1), ("r1", 2), ("r2", 1), ("r2", 2)]
    ids = [q.id for q in first + second + rest]
    assert sorted(ids) == sorted(q.id for q in a.page(a.get(job.id, "alice"), 100, 0)[0])  # same patches


def test_cancel_says_cancelling_until_the_running_raster_stops(managers):
    started, release = threading.Event(), threading.Event()

    def rank(uri, should_stop):
        started.set()
        release.wait(10)
        should_stop()
        return two_patches(uri), GEO

    ended = []
    a = managers(rank, on_end=ended.append)
    job = a.create("alice", b"spec", ["r0", "r1"], budget=0)
    assert started.wait(10)
    answer = a.cancel(a.get(job.id, "alice"))
    assert (answer.state, answer.cancel_requested) == ("CANCELLING", True)
    assert a.get(job.id, "alice").state == "CANCELLING"
    assert a.cancel(a.get(job.id, "alice")).state == "CANCELLING"  # asked again: still its true state
    release.set()
    cancelled = wait_state(a, job.id, {"CANCELLED"})
    assert cancelled.claims == () and cancelled.rasters_done == 0
    assert eventually(lambda: ended == ["CANCELLED"]), ended


def test_a_request_id_gives_the_same_job_back_and_refuses_another_spec(managers, tmp_path):
    a = managers(lambda uri, stop: (two_patches(uri), GEO))
    first = a.create("alice", b"spec", ["r"], budget=0, request_id="req-1", request_digest="d1")
    assert a.create("alice", b"spec", ["r"], budget=0, request_id="req-1", request_digest="d1").id == first.id
    with pytest.raises(RequestConflict) as error:
        a.create("alice", b"other", ["r", "s"], budget=0, request_id="req-1", request_digest="d2")
    assert f"queueJobs/{first.id}" in str(error.value) and "req-1" in str(error.value)
    # Another caller's request id is theirs alone; a manager on the same store (a restart) finds it.
    assert a.create("bob", b"spec", ["r"], budget=0, request_id="req-1", request_digest="d1").id != first.id
    restarted = JobManager(JobStore(tmp_path / "jobs"), lambda spec: None)
    assert restarted.create("alice", b"spec", ["r"], budget=0, request_id="req-1",
                            request_digest="d1").id == first.id
    assert len([r for r in restarted.list_jobs("alice", 100)[0]]) == 1


def test_listing_a_callers_jobs_is_newest_first_paged_and_theirs_alone(managers):
    clock = [1000.0]
    a = managers(lambda uri, stop: (two_patches(uri), GEO), clock=lambda: clock[0])
    made = []
    for i in range(5):
        clock[0] += 1
        made.append(a.create("alice", b"spec", [f"r{i}"], budget=0).id)
    a.create("bob", b"spec", ["b"], budget=0)
    first, after = a.list_jobs("alice", 2)
    second, after2 = a.list_jobs("alice", 2, after)
    third, end = a.list_jobs("alice", 2, after2)
    assert [r.id for r in first + second + third] == made[::-1] and end is None
    assert [r.owner for r in a.list_jobs("bob", 10)[0]] == ["bob"]
    assert a.list_jobs("carol", 10) == ([], None)


def test_a_killed_write_of_a_rasters_result_is_cleared_at_start_once_old(managers, tmp_path):
    import os

    a = managers(lambda uri, stop: (two_patches(uri), GEO))
    job = wait_state(a, a.create("alice", b"spec", ["r"], budget=0).id, {"SUCCEEDED"})
    stale = a.store.folder(job.id) / "rasters" / ".0.json.0badf00d.tmp"
    stale.write_bytes(b"half a raster")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    managers(lambda uri, stop: (two_patches(uri), GEO))
    assert not stale.exists() and (a.store.folder(job.id) / "rasters" / "0.json").exists()


def test_a_job_stored_before_rasters_were_tasks_is_read_and_finished(managers, tmp_path):
    import json

    from dial_services.acquisition.job_store import JobRecord

    store = JobStore(tmp_path / "jobs")
    now = time.time()
    store.create(JobRecord("00000000000000e1", "alice", b"spec", ("r", "rr"), 0, now, now, state="RUNNING"))
    path = store.folder("00000000000000e1") / "job.json"
    old = json.loads(path.read_text())
    for new_field in ("claims", "next_index", "failures", "request_id", "request_digest"):
        del old[new_field]
    # One lease for the whole job, its progress only in the memory of a replica that died.
    path.write_text(json.dumps(old | {"rasters_done": 1, "holder": "gone", "lease_until": now - 1}))
    read = store.read("00000000000000e1")
    assert (read.state, read.claims, read.rasters_done, read.next_index) == ("RUNNING", (), 0, 0)
    a = managers(lambda uri, stop: (two_patches(uri), GEO))
    done = wait_state(a, read.id, {"SUCCEEDED"})
    assert done.rasters_done == 2 and len(a.page(done, 10, 0)[0]) == 4


def test_a_small_job_is_not_queued_behind_a_big_one(managers):
    first_done, release = threading.Event(), threading.Event()
    ranked = []

    def rank(uri, should_stop):
        ranked.append(uri)
        if uri == "big0":
            first_done.wait(10)
        elif uri.startswith("big"):
            release.wait(10)
        return two_patches(uri), GEO

    a = managers(rank, workers=2)
    big = a.create("alice", b"spec", [f"big{i}" for i in range(50)], budget=0)
    assert eventually(lambda: len(ranked) == 2)  # both workers on the only job there is
    small = a.create("bob", b"spec", ["small"], budget=0)
    first_done.set()  # one worker comes free while the other still ranks big1
    wait_state(a, small.id, {"SUCCEEDED"})
    # That worker takes bob's raster, not the big job's third.
    assert ranked[2] == "small", ranked
    release.set()
    wait_state(a, big.id, {"SUCCEEDED"})
