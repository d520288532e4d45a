"""Queue jobs in the shared job store: any replica answers for any job, and no job is lost with a replica."""
from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import replace

import pytest

from dial.acquisition.ranking import RankedPatch
from dial.imagery.georef import GeoReference, Window
from dial_services.acquisition.job_store import JobRecord, JobStore, StoredPatch
from dial_services.acquisition.jobs import JobManager, TooManyJobs
from dial_services.common.durable import LEFTOVER_SECONDS, DamagedRecord, StoreWriteError
from dial_services.common.errors import invalid_argument
from tests.support.queue_jobs import eventually, wait_state


def patch(score: float, row: int = 0) -> RankedPatch:
    return RankedPatch(1, score, (row, 0, 8, 8), 2.0, ((row + 1, 1),))


def plan_of(rank):
    return lambda spec: rank


def scores_by_uri(uri, should_stop):
    geo = GeoReference("EPSG:32633", (0.5, 0, 0, 0, -0.5, 0))
    return [patch(float(len(uri)), 0), patch(float(len(uri)) / 10, 8)], geo


@pytest.fixture()
def managers(tmp_path):
    made = []

    def make(plan, **options):
        options = {"poll_seconds": 0.05, "lease_seconds": 5.0} | options
        manager = JobManager(JobStore(tmp_path / "jobs"), plan, **options).start()
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()


def test_a_job_ranks_across_rasters_and_pages_from_another_replica(managers):
    a = managers(plan_of(scores_by_uri))
    b = managers(plan_of(lambda uri, stop: pytest.fail("only one replica runs a job")), workers=1)
    b.close()  # b only answers; it takes no work
    job = a.create("alice", b"spec", ["r", "rrr", "rr"], budget=4)
    done = wait_state(a, job.id, {"SUCCEEDED"})
    assert done.rasters_done == 3 and done.claims == ()
    seen = b.get(job.id, "alice")
    assert seen.state == "SUCCEEDED"
    page, geos, after = b.page(seen, 3, 0)
    assert [(q.raster_uri, q.patch.rank, q.patch.score) for q in page] == [("rrr", 1, 3.0), ("rr", 2, 2.0),
                                                                          ("r", 3, 1.0)]
    assert geos["rrr"] == GeoReference("EPSG:32633", (0.5, 0, 0, 0, -0.5, 0))
    assert page[0].patch.window == Window(0, 0, 8, 8) and page[0].patch.window.bottom == 8
    rest, _, end = b.page(seen, 3, after)
    assert [q.patch.score for q in rest] == [pytest.approx(0.3)] and end is None  # the budget kept 4
    assert b.mark_done(seen, [page[0].id, "nope"]) == (0, ["nope"])
    assert b.mark_done(seen, [page[0].id]) == (1, [])
    assert [q.id for q in a.page(a.get(job.id, "alice"), 10, 0)[0]] == [q.id for q in page[1:] + rest]


def test_another_callers_job_looks_missing(managers):
    a = managers(plan_of(scores_by_uri))
    job = a.create("alice", b"spec", ["r"], budget=0)
    assert a.get(job.id, "alice") is not None
    assert a.get(job.id, "bob") is None
    assert a.get("0123456789abcdef", "alice") is None
    assert a.get("../../etc/passwd", "alice") is None


def test_cancelling_a_running_job_stops_it_between_rasters_even_from_another_replica(managers):
    started, release = threading.Event(), threading.Event()
    ranked = []

    def rank(uri, should_stop):
        ranked.append(uri)
        started.set()
        release.wait(10)
        should_stop()
        return [patch(1.0)], None

    a = managers(plan_of(rank))
    b = managers(plan_of(rank))
    b.close()
    job = a.create("alice", b"spec", ["a", "b", "c"], budget=0)
    assert started.wait(10)
    assert b.get(job.id, "alice").state == "RUNNING"
    assert b.cancel(b.get(job.id, "alice")).cancel_requested
    release.set()
    cancelled = wait_state(a, job.id, {"CANCELLED"})
    assert ranked == ["a"] and cancelled.claims == ()
    assert eventually(lambda: a.store.live_ids() == [])  # the mark goes just after the state is committed


def test_a_pending_job_cancels_before_it_starts(managers):
    release = threading.Event()
    ranked = []

    def rank(uri, should_stop):
        ranked.append(uri)
        release.wait(10)
        return [], None

    a = managers(plan_of(rank), workers=1)
    blocker = a.create("alice", b"spec", ["blocker"], budget=0)
    wait_state(a, blocker.id, {"RUNNING"})  # the one worker is busy, so the next job waits
    waiting = a.create("alice", b"spec", ["waiting"], budget=0)
    assert a.cancel(a.get(waiting.id, "alice")).state == "CANCELLED"
    release.set()
    assert wait_state(a, blocker.id, {"SUCCEEDED"}).state == "SUCCEEDED"
    time.sleep(0.2)  # a few polls of the now idle worker
    assert a.get(waiting.id, "alice").state == "CANCELLED" and ranked == ["blocker"]


def test_a_stopping_replica_hands_its_job_to_another(managers):
    started, release = threading.Event(), threading.Event()

    def slow(uri, should_stop):
        started.set()
        release.wait(10)
        should_stop()
        return [patch(1.0)], None

    a = managers(plan_of(slow))
    job = a.create("alice", b"spec", ["a", "b"], budget=0)
    assert started.wait(10)
    a.close()  # a rolling update: the job goes back to PENDING at once
    assert a.store.read(job.id).state == "PENDING"
    b = managers(plan_of(scores_by_uri))
    release.set()
    done = wait_state(b, job.id, {"SUCCEEDED"})
    assert done.rasters_done == 2 and len(b.page(done, 10, 0)[0]) == 4  # b's ranking, not a's


def test_a_dead_replicas_job_is_taken_over_once_its_lease_lapses(managers, tmp_path):
    store = JobStore(tmp_path / "jobs")
    now = time.time()
    # What a replica killed mid-job leaves behind: RUNNING, held, its lease running out.
    orphan = JobRecord("00000000000000aa", "alice", b"spec", ("r",), 0, now, now, state="RUNNING",
                       claims=((0, "gone", now + 2.0),), next_index=1)
    store.create(orphan)
    events = []
    b = managers(plan_of(scores_by_uri), on_take_over=lambda: events.append("taken over"), on_end=events.append)
    time.sleep(0.5)
    assert store.read(orphan.id).claims[0][1] == "gone"  # not before the lease lapses
    done = wait_state(b, orphan.id, {"SUCCEEDED"})
    assert done.rasters_done == 1
    # The worker reports the end just after committing it.
    assert eventually(lambda: events == ["taken over", "SUCCEEDED"]), events


def test_a_running_replica_renews_its_lease(managers):
    release = threading.Event()
    a = managers(plan_of(lambda uri, stop: (release.wait(10), ([patch(1.0)], None))[1]), lease_seconds=1.0)
    # Another replica, polling all along: it must find nothing to take over.
    managers(plan_of(lambda uri, stop: pytest.fail("a live replica's job must not be taken over")), lease_seconds=1.0)
    job = a.create("alice", b"spec", ["a"], budget=0)
    wait_state(a, job.id, {"RUNNING"})
    time.sleep(2.5)  # two and a half leases
    assert a.store.read(job.id).claims[0][1] == a.replica
    release.set()
    assert wait_state(a, job.id, {"SUCCEEDED"}).state == "SUCCEEDED"


def test_a_failing_raster_fails_the_job_with_its_reason(managers):
    def rank(uri, should_stop):
        if uri == "bad.png":  # what UriPolicy.open_raster raises for a raster it refuses
            raise invalid_argument([("spec.rasters[0].uri", f"{uri} is not a GeoTIFF")])
        raise ValueError(f"/srv/private/{uri} broke")  # a failure nobody expected

    ended = []
    a = managers(plan_of(rank), on_end=ended.append)
    job = a.create("alice", b"spec", ["bad.png"], budget=0)
    failed = wait_state(a, job.id, {"FAILED"})
    assert "spec.rasters[0].uri: bad.png is not a GeoTIFF" in failed.error_message
    assert "ApiError" not in failed.error_message
    assert eventually(lambda: ended == ["FAILED"] and a.running_count() == 0), ended
    # An unexpected failure reads as a call's INTERNAL would: a request id, no class name, no server path.
    other = wait_state(a, a.create("alice", b"spec", ["odd.tif"], budget=0).id, {"FAILED"})
    assert other.error_message.startswith("internal error (request id ")
    assert "ValueError" not in other.error_message and "/srv/private" not in other.error_message


def test_one_caller_may_hold_only_so_many_live_jobs(managers):
    release = threading.Event()
    a = managers(plan_of(lambda uri, stop: (release.wait(10), ([], None))[1]), max_live_per_owner=2)
    first = a.create("alice", b"spec", ["a"], budget=0)
    a.create("alice", b"spec", ["b"], budget=0)
    with pytest.raises(TooManyJobs) as error:
        a.create("alice", b"spec", ["c"], budget=0)
    assert error.value.live == 2
    assert str(error.value) == ("alice has 2 queue jobs pending or running, the most one caller may have (2); "
                                "wait for one to finish or cancel one")
    a.create("bob", b"spec", ["d"], budget=0)  # another caller is not held back
    a.cancel(a.get(first.id, "alice"))
    release.set()
    wait_state(a, first.id, {"CANCELLED"})
    a.create("alice", b"spec", ["e"], budget=0)


def test_finished_jobs_are_forgotten_after_the_ttl_and_marking_keeps_them(managers):
    clock = [time.time()]
    # A long lease keeps the background purge out of the way of the one this test calls.
    a = managers(plan_of(scores_by_uri), ttl_seconds=100, lease_seconds=1000, clock=lambda: clock[0])
    kept, dropped = (a.create("alice", b"spec", [uri], budget=0) for uri in ("r", "rr"))
    for job in (kept, dropped):
        wait_state(a, job.id, {"SUCCEEDED"})
    clock[0] += 60
    a.mark_done(a.get(kept.id, "alice"), [a.page(a.get(kept.id, "alice"), 1, 0)[0][0].id])
    clock[0] += 60  # dropped: idle 120 s; kept: 60 s since its patch was marked
    assert a.get(dropped.id, "alice") is None and a.get(kept.id, "alice") is not None
    assert a.forget_expired() == 1
    assert a.store.read(dropped.id) is None and sorted(a.store.ids()) == [kept.id]


def test_a_stored_job_round_trips(tmp_path):
    store = JobStore(tmp_path)
    record = JobRecord("0123456789abcdef", "alice", b"\x00\xffspec", ("a.tif", "b.tif"), 7, 1.0, 2.0)
    store.create(record)
    assert store.read(record.id) == record and store.live_ids() == [record.id]
    queue = [StoredPatch("0-0-0", "a.tif", RankedPatch(1, 0.5, (0, 0, 8, 8), 3.0, ((1, 2),)))]
    store.write_patches(record.id, queue, {"a.tif": None})
    assert store.read_patches(record.id) == (queue, {"a.tif": None})
    store.update(record.id, lambda r: replace(r, state="SUCCEEDED"))
    assert store.live_ids() == []
    # What a crash inside create() can leave: a live mark and no job. Dropped once old, not before.
    (tmp_path / "live" / "00000000000000ff").touch()
    assert store.drop_stray_live_marks(older_than=time.time() - 60) == 0
    assert store.drop_stray_live_marks(older_than=time.time() + 1) == 1 and store.live_ids() == []
    assert store.update("../../etc", lambda r: pytest.fail("never a path outside the store")) is None


def test_a_full_store_in_a_jobs_own_error_path_leaves_the_worker_alive(managers, full_store):
    calls = []

    def rank(uri, should_stop):
        calls.append(uri)
        if len(calls) == 1:
            full_store.set()  # the disk fills while the job runs, so even recording its failure fails
            raise ValueError("the first try fails")
        return [patch(1.0)], None

    health = []
    a = managers(plan_of(rank), lease_seconds=1.0, on_store_health=health.append)
    job = a.create("alice", b"spec", ["r"], budget=0)
    assert eventually(lambda: health == [False]), health
    assert not a.store_writable
    with pytest.raises(StoreWriteError) as refused:
        a.create("bob", b"spec", ["b"], budget=0)
    assert refused.value.errno == errno.ENOSPC
    assert a.store.read(job.id).state == "RUNNING"  # nothing could be recorded, so nothing was
    full_store.clear()
    # The store takes writes again: health says so, and the same worker runs the job again once the
    # lease it could not end lapses.
    assert eventually(lambda: health == [False, True]), health
    assert wait_state(a, job.id, {"SUCCEEDED"}).state == "SUCCEEDED"
    assert calls == ["r", "r"]
    later = a.create("bob", b"spec", ["b"], budget=0)
    assert wait_state(a, later.id, {"SUCCEEDED"}).state == "SUCCEEDED"


def test_a_failure_saving_the_queue_is_retried_not_reported_as_the_jobs_failure(managers, full_store):
    def rank(uri, should_stop):
        return [patch(1.0)], None

    health = []
    original = JobStore.write_patches
    tries = []

    def write_patches(self, job_id, patches, geos):
        tries.append(job_id)
        if len(tries) == 1:
            full_store.set()
        try:
            return original(self, job_id, patches, geos)
        finally:
            full_store.clear()

    a = managers(plan_of(rank), lease_seconds=1.0, on_store_health=health.append)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(JobStore, "write_patches", write_patches)
        job = a.create("alice", b"spec", ["r"], budget=0)
        done = wait_state(a, job.id, {"SUCCEEDED", "FAILED"})
    assert done.state == "SUCCEEDED" and done.error_message == ""
    assert len(tries) == 2 and health[:1] == [False]


def test_a_dead_holders_lease_set_far_ahead_does_not_block_cancel_or_take_over(managers, tmp_path):
    store = JobStore(tmp_path / "jobs")
    now = time.time()
    # A replica whose clock ran an hour fast, killed mid-job.
    skewed = [JobRecord(f"00000000000000b{i}", "alice", b"spec", ("r",), 0, now + i, now, state="RUNNING",
                        claims=((0, "fast-clock", now + 3600.0),), next_index=1) for i in range(2)]
    for record in skewed:
        store.create(record)
    answering = JobManager(store, plan_of(scores_by_uri), lease_seconds=5.0)  # not started: it only answers
    cancelled = answering.cancel(answering.get(skewed[0].id, "alice"))
    assert (cancelled.state, cancelled.claims) == ("CANCELLED", ())  # at once: no one would notice a request
    a = managers(plan_of(scores_by_uri), lease_seconds=5.0)
    assert wait_state(a, skewed[1].id, {"SUCCEEDED"}).rasters_done == 1  # taken over, not waited for an hour
    # A live holder's lease (up to one lease ahead) is still respected.
    assert a._lease_held(now + 5.0, now)
    assert not a._lease_held(now + 3600.0, now)


def damage(path):
    path.write_text(path.read_text()[:40])  # what a torn or hand-edited file looks like


def test_a_damaged_job_is_moved_aside_and_holds_up_no_one_else(managers, tmp_path):
    store = JobStore(tmp_path / "jobs")
    now = time.time()
    broken = JobRecord("00000000000000c1", "alice", b"spec", ("r",), 0, now - 10, now - 10)
    store.create(broken)
    damage(store.folder(broken.id) / "job.json")
    a = managers(plan_of(scores_by_uri))
    # Creating and running another caller's jobs goes on (before, reading every live job failed).
    other = a.create("bob", b"spec", ["rr"], budget=0)
    assert wait_state(a, other.id, {"SUCCEEDED"}).state == "SUCCEEDED"
    assert a.get(broken.id, "bob") is None  # still another caller's: it looks missing
    with pytest.raises(DamagedRecord) as error:
        a.get(broken.id, "alice")
    assert error.value.owner == "alice"
    assert store.quarantined_count() == 1 and broken.id not in store.ids()
    assert eventually(lambda: store.live_ids() == [])
    assert not a.remove_damaged(broken.id, "bob")
    assert a.remove_damaged(broken.id, "alice")
    assert a.get(broken.id, "alice") is None and store.quarantined_count() == 0


def test_a_damaged_jobs_owner_is_known_from_the_record_when_it_has_no_owner_file(tmp_path):
    store = JobStore(tmp_path / "jobs")
    record = JobRecord("00000000000000c2", "carol \"c\"", b"spec", ("r",), 0, 1.0, 1.0)
    store.create(record)
    (store.folder(record.id) / "owner").unlink()  # as jobs made before owner files
    path = store.folder(record.id) / "job.json"
    path.write_text(path.read_text()[:-5])
    with pytest.raises(DamagedRecord) as error:
        store.read(record.id)
    assert error.value.owner == 'carol "c"' and store.damaged_owner(record.id) == 'carol "c"'


def test_leftovers_of_a_killed_replica_are_removed_at_start_once_old(managers, tmp_path):
    store = JobStore(tmp_path / "jobs")
    record = JobRecord("00000000000000d1", "alice", b"spec", ("r",), 0, 1.0, 1.0, state="SUCCEEDED")
    store.create(record)
    old = time.time() - 2 * LEFTOVER_SECONDS
    stale = [store.folder(record.id) / ".job.json.0badf00d.tmp", tmp_path / "jobs" / ".staging-00000000000000d2"]
    stale[0].write_bytes(b"half a job")
    stale[1].mkdir()
    fresh = store.folder(record.id) / ".done.json.1234abcd.tmp"  # perhaps another replica's write, now
    fresh.write_bytes(b"[]")
    for path in stale:
        os.utime(path, (old, old))
    managers(plan_of(scores_by_uri))
    assert [p.exists() for p in stale] == [False, False]
    assert fresh.exists() and store.read(record.id) == record


def test_a_damaged_queue_is_reported_as_damaged_not_as_a_crash(managers):
    a = managers(plan_of(scores_by_uri))
    job = a.create("alice", b"spec", ["r"], budget=0)
    done = wait_state(a, job.id, {"SUCCEEDED"})
    damage(a.store.folder(job.id) / "patches.json")
    with pytest.raises(DamagedRecord):
        a.page(done, 10, 0)
    (a.store.folder(job.id) / "done.json").write_text("[1, ")
    with pytest.raises(DamagedRecord):
        a.store.read_done(job.id)
