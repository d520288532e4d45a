"""The shared stores under faults, against in-process servers: a full volume, damaged records, a dead
replica's skewed lease, a killed write's leftovers, and caller input that must not reach the store or
come back unbounded in an error. In each case a bystander's sessions and jobs are unchanged and the
server keeps serving (the Acquisition service name says NOT_SERVING only while its job store refuses
writes)."""
from __future__ import annotations

import errno
import os
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from dial.imagery.raster import GeoTiffWriter
from dial.imagery.georef import GeoReference
from dial_client import AcquisitionClient, AdapterClient
from dial_client.wire import acquisition_pb2, acquisition_pb2_grpc, adapter_pb2, adapter_pb2_grpc
from dial_client.errors import DialError, InvalidArgument, NotFound, ResourceExhausted
from dial_services.acquisition.job_store import JobRecord, JobStore
from dial_services.common.durable import LEFTOVER_SECONDS

SIZE = 64
GEO = GeoReference("EPSG:32633", (0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0))
ACQUISITION = "dial.v1.Acquisition"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def eventually(condition, seconds=20.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def health(port: int, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                         timeout=10).status


def metric(running, name: str) -> float:
    for line in running.metrics.exposition().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not exported")


def wait_finished(client, name, seconds=120):
    deadline = time.monotonic() + seconds
    while not (job := client.job(name)).finished:
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


@pytest.fixture()
def raster(raster_root, tiny_manifest):
    image = np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, tiny_manifest.n_bands)).astype(
        tiny_manifest.input_dtype)
    path = raster_root / "scene.tif"
    with GeoTiffWriter(path, height=SIZE, width=SIZE, bands=image.shape[2], dtype=str(image.dtype), geo=GEO) as w:
        w.write(image, 0, 0)
    return str(path)


@pytest.fixture()
def acquisition(tiny_repo, raster_root):
    """A started Acquisition server on its own job store; ``make`` starts it (a test may prepare the store
    first)."""
    from dial_services.acquisition.main import AcquisitionConfig, start

    started = []
    store = raster_root.parent / "queue-jobs"

    def make():
        running = start(AcquisitionConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, provider="cpu",
                                          raster_roots=(raster_root,), job_store=store,
                                          session_store=raster_root.parent / "sessions", job_lease_seconds=1.0))
        started.append(running)
        return running

    yield make, store
    for running in started:
        running.stop(0)


def clients(running):
    address = f"127.0.0.1:{running.port}"
    return (AcquisitionClient(address, caller="alice", retries=0, timeout=60),
            AcquisitionClient(address, caller="bob", retries=0, timeout=60))


# -- defect 5: a full job store --------------------------------------------
def test_a_full_job_store_refuses_new_jobs_as_exhausted_and_says_so_in_health_until_it_frees(
        acquisition, raster, full_store):
    make, _ = acquisition
    running = make()
    alice, bob = clients(running)
    with alice, bob:
        kept = wait_finished(alice, alice.submit_queue([raster], model="tiny", patch_size=32).name)
        assert kept.state == "SUCCEEDED" and health(running.port, ACQUISITION) == SERVING
        full_store.set()
        with pytest.raises(ResourceExhausted) as error:
            bob.submit_queue([raster], model="tiny", patch_size=32)
        assert "job store is full" in error.value.message
        # Only the service whose store is full says so; the server stays up (liveness must not restart it).
        assert health(running.port, ACQUISITION) == NOT_SERVING and health(running.port) == SERVING
        running.publish_health()  # as when a worker frees: capacity does not hide the store
        assert health(running.port, ACQUISITION) == NOT_SERVING
        assert metric(running, "dial_acquisition_job_store_writable") == 0.0
        # A bystander's finished job reads as before.
        assert alice.job(kept.name).state == "SUCCEEDED" and len(next(alice.queue(kept))) > 0
        full_store.clear()
        assert eventually(lambda: health(running.port, ACQUISITION) == SERVING)
        assert metric(running, "dial_acquisition_job_store_writable") == 1.0
        later = wait_finished(bob, bob.submit_queue([raster], model="tiny", patch_size=32).name)
        assert later.state == "SUCCEEDED"


def test_a_job_whose_queue_cannot_be_saved_runs_again_once_the_store_frees(acquisition, raster, full_store):
    make, store_root = acquisition
    original = JobStore.write_patches
    refused = []

    def write_patches(self, job_id, patches, geos):
        if not refused:
            refused.append(job_id)
            full_store.set()  # the volume fills just as the queue is saved; the job's end cannot be saved
        return original(self, job_id, patches, geos)

    running = make()
    alice, _ = clients(running)
    with alice, pytest.MonkeyPatch.context() as mp:
        mp.setattr(JobStore, "write_patches", write_patches)
        job = alice.submit_queue([raster], model="tiny", patch_size=32)
        assert eventually(lambda: health(running.port, ACQUISITION) == NOT_SERVING)
        assert alice.job(job.name).state == "RUNNING"
        full_store.clear()
        done = wait_finished(alice, job.name)
    # Not FAILED with the store's error: the worker lived, and ran it again once the lease it held lapsed.
    assert (done.state, done.error_message) == ("SUCCEEDED", "")
    assert eventually(lambda: health(running.port, ACQUISITION) == SERVING)


# -- defect 6: a damaged job record ------------------------------------------
def test_a_damaged_job_answers_data_loss_to_its_owner_alone_and_holds_up_no_one(acquisition, raster):
    make, store_root = acquisition
    store = JobStore(store_root)
    now = time.time()
    spec = acquisition_pb2.QueueJobSpec(model={"name": "tiny", "version": "1"}, rasters=[{"uri": raster}])
    broken = JobRecord("00000000000000e1", "alice", spec.SerializeToString(), (raster,), 0, now, now)
    store.create(broken)
    path = store.folder(broken.id) / "job.json"
    path.write_text(path.read_text()[:60])  # truncated, as the review left it; it is still PENDING (live)
    running = make()
    alice, bob = clients(running)
    name = f"queueJobs/{broken.id}"
    with alice, bob:
        # Creating and running another caller's job goes on (it read every live job and failed before).
        assert wait_finished(bob, bob.submit_queue([raster], model="tiny", patch_size=32).name).state == "SUCCEEDED"
        with pytest.raises(DialError) as error:
            alice.job(name)
        assert error.value.code == grpc.StatusCode.DATA_LOSS and "CancelQueueJob removes it" in error.value.message
        with pytest.raises(NotFound):
            bob.job(name)  # names reveal nothing about other callers' jobs
        with pytest.raises(NotFound):
            bob.cancel(name)
        assert metric(running, "dial_acquisition_queue_jobs_quarantined") == 1.0
        removed = alice.cancel(name)
        assert removed.state == "CANCELLED" and "damaged" in removed.error_message
        with pytest.raises(NotFound):
            alice.job(name)
        assert metric(running, "dial_acquisition_queue_jobs_quarantined") == 0.0
        assert wait_finished(alice, alice.submit_queue([raster], model="tiny", patch_size=32).name).state == \
            "SUCCEEDED"
    assert health(running.port) == SERVING and health(running.port, ACQUISITION) == SERVING


# -- defect 9: a dead holder's lease set in the future ---------------------------
def test_a_job_a_dead_replica_leased_far_into_the_future_can_be_cancelled(acquisition, raster):
    make, store_root = acquisition
    store = JobStore(store_root)
    now = time.time()
    rasters = [raster] * 200  # seconds of work, so the cancel finds it live
    spec = acquisition_pb2.QueueJobSpec(model={"name": "tiny", "version": "1"}, rasters=[{"uri": r} for r in rasters],
                                        patch_size_px=32)
    # A replica whose clock ran a day ahead, killed mid-job.
    store.create(JobRecord("00000000000000f1", "alice", spec.SerializeToString(), tuple(rasters), 0, now, now,
                           state="RUNNING", claims=((0, "replica-with-a-fast-clock", now + 86400.0),), next_index=1))
    running = make()
    alice, _ = clients(running)
    with alice:
        alice.cancel("queueJobs/00000000000000f1")
        assert wait_finished(alice, "queueJobs/00000000000000f1", seconds=30).state == "CANCELLED"


# -- defect 6: a damaged session record ----------------------------------------
def start_adapter(tiny_repo, store):
    from dial_services.adapter.config import AdapterConfig
    from dial_services.adapter.main import start

    running = start(AdapterConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, session_store=store,
                                  adaptation_steps=1, crop_px=64, learning_rate=3e-2))
    return running


@pytest.fixture()
def image(tiny_manifest):
    rng = np.random.default_rng(3)
    return rng.integers(0, 255, (SIZE, SIZE, tiny_manifest.n_bands)).astype(tiny_manifest.input_dtype)


@pytest.fixture()
def adapter(tiny_repo, tmp_path):
    running = start_adapter(tiny_repo, tmp_path / "sessions")
    yield running, tmp_path / "sessions"
    running.stop(0)


def adapter_clients(running):
    address = f"127.0.0.1:{running.port}"
    return (AdapterClient(address, caller="alice", retries=0, timeout=60),
            AdapterClient(address, caller="bob", retries=0, timeout=60))


def test_a_damaged_session_answers_data_loss_to_its_owner_who_may_delete_it(adapter, image):
    from dial_client import Click

    running, store = adapter
    alice, bob = adapter_clients(running)
    with alice, bob:
        damaged = alice.create_session(image, model="tiny")
        kept = bob.create_session(image, model="tiny")
        kept.add_clicks([Click(5, 5, 1)])
        meta = store / damaged.session_id / "meta.json"
        meta.write_text(meta.read_text()[:50])
        # Everyone else's calls go on as before (they answered INTERNAL for every caller).
        assert [s.name for s in bob.list_sessions()] == [kept.name]
        assert bob.create_session(image, model="tiny").info.clicks == ()
        assert bob.get_session(kept.name).info.clicks == (Click(5, 5, 1),)
        assert alice.list_sessions() == []
        with pytest.raises(DialError) as error:
            alice.get_session(damaged.name)
        assert error.value.code == grpc.StatusCode.DATA_LOSS and "DeleteSession" in error.value.message
        for call in (lambda: bob.get_session(damaged.name), lambda: bob._call(
                "DeleteSession", adapter_pb2.DeleteSessionRequest(name=damaged.name), None)):
            with pytest.raises(NotFound):
                call()
        assert metric(running, "dial_adapter_sessions_quarantined") == 1.0
        damaged.delete()
        with pytest.raises(NotFound):
            alice.get_session(damaged.name)
        assert metric(running, "dial_adapter_sessions_quarantined") == 0.0
        assert alice.create_session(image, model="tiny").info.adaptation_count == 0
    assert health(running.port) == SERVING


def test_a_session_whose_arrays_are_damaged_is_data_loss_and_can_be_deleted(adapter, image):
    running, store = adapter
    alice, _ = adapter_clients(running)
    with alice:
        session = alice.create_session(image, model="tiny")
        running.sessions._live.clear()  # as after a restart: the next call loads it from the store
        (store / session.session_id / "image.npy").write_bytes(b"\x93NUMPY garbage")
        with pytest.raises(DialError) as error:
            session.predict()
        assert error.value.code == grpc.StatusCode.DATA_LOSS
        session.delete()
        with pytest.raises(NotFound):
            session.get()


# -- defect 9: leftovers of kill -9 ----------------------------------------------
def test_temporary_files_a_killed_write_left_are_removed_at_start_once_old(tiny_repo, tmp_path, image):
    store = tmp_path / "sessions"
    first = start_adapter(tiny_repo, store)
    with AdapterClient(f"127.0.0.1:{first.port}", caller="alice", retries=0) as alice:
        session = alice.create_session(image, model="tiny")
    first.stop(0)
    folder = store / session.session_id
    old = time.time() - 2 * LEFTOVER_SECONDS
    stale = [folder / ".meta.json.0badf00d.tmp", folder / ".state-1.pt.deadbeef.tmp",
             store / f".staging-{'0' * 32}"]
    stale[0].write_text('{"half": ')
    stale[1].write_bytes(b"\x00" * 1000)
    stale[2].mkdir()
    fresh = folder / ".meta.json.1234abcd.tmp"  # perhaps a write on another replica now
    fresh.write_text("{}")
    for path in stale:
        os.utime(path, (old, old))
    second = start_adapter(tiny_repo, store)
    try:
        assert [path.exists() for path in stale] == [False, False, False] and fresh.exists()
        with AdapterClient(f"127.0.0.1:{second.port}", caller="alice", retries=0) as alice:
            assert alice.get_session(session.name).info.image_height == SIZE
    finally:
        second.stop(0)


# -- defect 9: settings and names checked at the edge ----------------------------
@pytest.mark.parametrize("settings", [dict(learning_rate=1e300), dict(learning_rate=2.0),
                                      dict(recall_weight=1e300), dict(learning_rate=float("nan"))])
def test_adaptation_settings_out_of_bounds_are_invalid_arguments_at_create(adapter, image, settings):
    running, _ = adapter
    alice, _ = adapter_clients(running)
    with alice:
        with pytest.raises(InvalidArgument) as error:
            alice.create_session(image, model="tiny", **settings)
        assert {v.field for v in error.value.field_violations} == {f"config.{next(iter(settings))}"}
        assert alice.list_sessions() == []


def test_the_largest_allowed_learning_rate_adapts(adapter, image):
    from dial_client import Click

    running, _ = adapter
    alice, _ = adapter_clients(running)
    with alice:
        session = alice.create_session(image, model="tiny", learning_rate=1.0, recall_weight=100.0)
        session.add_clicks([Click(5, 5, 1)])
        assert session.adapt().session.adaptation_count == 1


def test_the_adapters_own_settings_are_bounded_at_start_up(tiny_repo, tmp_path):
    from dial_services.adapter.config import AdapterConfig

    for settings in (dict(learning_rate=1e300), dict(recall_weight=1e6), dict(adaptation_steps=10**6)):
        with pytest.raises(ValidationError):
            AdapterConfig(session_store=tmp_path, **settings)


def test_an_unbounded_name_is_an_invalid_argument_with_a_short_message(adapter, acquisition):
    running, _ = adapter
    long_name = "sessions/" + "x" * 20000
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = adapter_pb2_grpc.AdapterStub(channel)
        for call in (lambda: stub.GetSession(adapter_pb2.GetSessionRequest(name=long_name), timeout=30),
                     lambda: stub.DeleteSession(adapter_pb2.DeleteSessionRequest(name=long_name), timeout=30)):
            with pytest.raises(grpc.RpcError) as error:
                call()
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert len(error.value.details()) < 300 and "20009 characters" in error.value.details()
    make, _ = acquisition
    acquisition_server = make()
    with grpc.insecure_channel(f"127.0.0.1:{acquisition_server.port}") as channel:
        stub = acquisition_pb2_grpc.AcquisitionStub(channel)
        for call in (lambda: stub.GetQueueJob(acquisition_pb2.GetQueueJobRequest(name="queueJobs/" + "0" * 20000),
                                              timeout=30),
                     lambda: list(stub.RankPatches(acquisition_pb2.RankPatchesRequest(
                         session=long_name, strategy="entropy"), timeout=30))):
            with pytest.raises(grpc.RpcError) as error:
                call()
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert len(error.value.details()) < 300
    assert health(running.port) == SERVING and health(acquisition_server.port) == SERVING


def test_an_error_message_is_bounded_whatever_a_handler_puts_in_it():
    from dial_services.common.errors import MAX_MESSAGE_CHARS, invalid_argument

    error = invalid_argument([(f"field{i}", "y" * 20000) for i in range(100)])
    status = error.to_status()
    assert len(error.message) <= MAX_MESSAGE_CHARS and len(error.violations) == 20
    # What travels in the trailers fits well inside gRPC's default 8 KiB of metadata.
    assert sum(len(value) for _, value in status.trailing_metadata) < 8192


def test_acquisition_reading_a_damaged_session_tells_its_owner_alone_even_on_a_read_only_store(tmp_path,
                                                                                               monkeypatch):
    from dial_services.acquisition.sessions import SessionReader
    from dial_services.adapter.store import SessionStore
    from dial_services.common.session_record import SessionRecord, new_session_id
    from dial_services.common.errors import status_for

    store = SessionStore(tmp_path)
    now = time.time()
    record = SessionRecord(id=new_session_id(), owner="alice", model_name="tiny", model_version="1", height=4,
                           width=4, clicks=(), settings={}, create_time=now, update_time=now)
    store.create(record, np.zeros((4, 4, 3), np.uint8), np.zeros((2, 4, 4), np.float32))
    meta = tmp_path / record.id / "meta.json"
    meta.write_text(meta.read_text()[:30])
    reader = SessionReader(tmp_path, ttl_seconds=0)
    real_rename = os.rename

    def read_only(source, target):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "rename", read_only)  # Acquisition may mount the session store read-only
    codes = {}
    for caller in ("alice", "bob"):
        with pytest.raises(Exception) as error:
            reader.read(caller, record.id)
        codes[caller] = status_for(error.value)[0]
    assert codes == {"alice": grpc.StatusCode.DATA_LOSS, "bob": grpc.StatusCode.NOT_FOUND}
    assert meta.exists() and store.quarantined_count() == 0  # left where it is
    monkeypatch.setattr(os, "rename", real_rename)
    with pytest.raises(Exception) as error:
        reader.read("alice", record.id)  # moved aside now, and still its owner's to hear about
    assert status_for(error.value)[0] == grpc.StatusCode.DATA_LOSS and store.quarantined_count() == 1
    assert store.records() == []
