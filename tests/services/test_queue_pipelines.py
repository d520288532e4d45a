"""Queue jobs for real pipelines, over gRPC with real GeoTIFFs: a bad raster among good ones, an
idempotent create, finding lost jobs, pages while the job runs, and a cancel that tells the truth."""
from __future__ import annotations

import re
import time

import grpc
import pytest

from dial_client import AcquisitionClient, AlreadyExists, FailedPrecondition, InvalidArgument
from dial_client.wire import acquisition_pb2, acquisition_pb2_grpc
from tests.support.queue_jobs import scene, start_acquisition, wait_finished, write_raster


@pytest.fixture()
def server(tiny_repo, raster_root):
    running = start_acquisition(tiny_repo, raster_root, raster_root.parent / "queue-jobs", default_page_size=3)
    yield running
    running.stop(0)


def client_of(running, caller="alice", **options) -> AcquisitionClient:
    return AcquisitionClient(f"127.0.0.1:{running.port}", caller=caller, timeout=120, **options)


def test_a_bad_raster_among_good_ones_is_listed_failed_and_the_job_succeeds(server, raster_root):
    good = [write_raster(raster_root / f"good{i}.tif", scene(seed=i)) for i in range(2)]
    one_band = write_raster(raster_root / "one-band.tif", scene()[:, :, 0])  # the model reads 3 bands
    unreadable = raster_root / "torn.tif"
    unreadable.write_bytes(b"II*\x00" + b"\x00" * 40)  # a TIFF header and nothing after it
    rasters = [good[0], one_band, str(unreadable), good[1]]
    with client_of(server) as client:
        job = wait_finished(client, client.submit_queue(rasters, model="tiny", patch_size=64).name)
        assert (job.state, job.rasters_done, job.error_message) == ("SUCCEEDED", 4, "")
        assert [f.uri for f in job.failures] == [one_band, str(unreadable)]
        band, torn = (f.reason for f in job.failures)
        assert "spec.rasters[1]" in band and "band" in band, band
        assert "spec.rasters[2]" in torn, torn
        for reason in (band, torn):
            # User text: no exception class names, no stack traces.
            assert not re.search(r"\b[A-Z]\w*(Error|Exception)\b|Traceback", reason), reason
        patches = [q for page in client.queue(job, page_size=100) for q in page]
        assert patches and {q.raster_uri for q in patches} == set(good)
        raw = acquisition_pb2_grpc.AcquisitionStub(client._connection.channel).GetQueueJob(
            acquisition_pb2.GetQueueJobRequest(name=job.name), metadata=client._connection.metadata)
        assert raw.progress.rasters_failed == 2


def test_a_retried_create_returns_the_same_job_even_after_a_restart(server, tiny_repo, raster_root):
    path = write_raster(raster_root / "r.tif", scene())
    with client_of(server) as client:
        first = client.submit_queue([path], model="tiny", patch_size=64, request_id="batch-7")
        again = client.submit_queue([path], model="tiny", patch_size=64, request_id="batch-7")
        assert again.name == first.name and again.request_id == "batch-7"
        with pytest.raises(AlreadyExists) as error:
            client.submit_queue([path, path], model="tiny", patch_size=64, request_id="batch-7")
        assert first.name in error.value.message and "batch-7" in error.value.message
        # Without a request id of the caller's own, each call is a new job (its retries share one id).
        assert client.submit_queue([path], model="tiny").name != client.submit_queue([path], model="tiny").name
        with pytest.raises(InvalidArgument):
            client.submit_queue([path], model="tiny", request_id="x" * 129)
    with client_of(server, caller="bob") as bob:
        assert bob.submit_queue([path], model="tiny", patch_size=64, request_id="batch-7").name != first.name
    server.stop(0)
    restarted = start_acquisition(tiny_repo, raster_root, raster_root.parent / "queue-jobs")
    try:
        with client_of(restarted) as client:
            assert client.submit_queue([path], model="tiny", patch_size=64,
                                       request_id="batch-7").name == first.name
    finally:
        restarted.stop(0)


def test_list_queue_jobs_finds_the_callers_jobs_newest_first_and_only_theirs(server, raster_root):
    path = write_raster(raster_root / "r.tif", scene())
    with client_of(server) as alice, client_of(server, caller="bob") as bob:
        made = []
        for _ in range(4):
            made.append(alice.submit_queue([path], model="tiny", patch_size=64).name)
            time.sleep(0.01)
        theirs = bob.submit_queue([path], model="tiny", patch_size=64).name
        assert [job.name for job in alice.jobs(page_size=3)] == made[::-1]  # two pages of 3 and 1
        assert [job.name for job in bob.jobs()] == [theirs]
        stub = acquisition_pb2_grpc.AcquisitionStub(alice._connection.channel)
        metadata = alice._connection.metadata
        page = stub.ListQueueJobs(acquisition_pb2.ListQueueJobsRequest(page_size=3), metadata=metadata)
        assert len(page.jobs) == 3 and page.next_page_token
        for bad in (acquisition_pb2.ListQueueJobsRequest(page_size=-1),
                    *(acquisition_pb2.ListQueueJobsRequest(page_token=token)
                      for token in ("not-a-token", "nan/0123456789abcdef", "inf/0123456789abcdef", "1.5/../x"))):
            with pytest.raises(grpc.RpcError) as error:
                stub.ListQueueJobs(bad, metadata=metadata)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_running_job_pages_its_finished_rasters_and_cancel_says_cancelling(server, raster_root):
    paths = [write_raster(raster_root / f"r{i}.tif", scene(256, seed=i)) for i in range(3)]
    rasters = paths * 40  # seconds of work: the job is still running while it is paged
    with client_of(server) as client:
        job = client.submit_queue(rasters, model="tiny", patch_size=64)
        deadline = time.monotonic() + 60
        while client.job(job.name).rasters_done < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        seen, token = [], ""
        for _ in range(4):
            page, token = client.queue_page(job, token, page_size=5)
            assert token  # a running job always says where to come back
            seen += page
        assert len(seen) == 20 and len({q.id for q in seen}) == 20  # none twice
        assert all(q.patch.rank >= 1 for q in seen) and {q.raster_uri for q in seen} <= set(paths)
        with pytest.raises(FailedPrecondition):
            client.queue_page(job, "3")  # a token of the final ranking, which is not there yet
        cancelling = client.cancel(job.name)
        assert cancelling.state in ("CANCELLING", "CANCELLED")
        assert client.job(job.name).state in ("CANCELLING", "CANCELLED")
        cancelled = wait_finished(client, job.name)
        assert cancelled.state == "CANCELLED" and cancelled.rasters_done < len(rasters)
        with pytest.raises(FailedPrecondition):
            client.queue_page(job)


def strategy_runs(running) -> int:
    """How many strategy maps this server computed: one per raster it ranked."""
    text = running.metrics.exposition().decode()
    found = re.search(r'^dial_acquisition_strategy_seconds_count\{strategy="entropy"\} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


def test_two_servers_on_one_store_share_a_big_job_and_one_leaving_costs_only_its_raster(tiny_repo, raster_root):
    # Rasters large enough that the job outlasts an idle replica's 2 s look at the store for work,
    # so the second replica gets to take some.
    paths = [write_raster(raster_root / f"r{i}.tif", scene(512, seed=i)) for i in range(4)]
    store = raster_root.parent / "shared-jobs"
    a, b = (start_acquisition(tiny_repo, raster_root, store) for _ in range(2))
    try:
        with client_of(a) as client:
            shared = wait_finished(client, client.submit_queue(paths * 6, model="tiny", patch_size=64).name)
            assert (shared.state, shared.rasters_done) == ("SUCCEEDED", 24)
            runs = strategy_runs(a), strategy_runs(b)
            assert runs[0] > 0 and runs[1] > 0 and sum(runs) == 24, runs  # both worked, no raster twice
            job = client.submit_queue(paths * 6, model="tiny", patch_size=64)
            deadline = time.monotonic() + 60
            while client.job(job.name).rasters_done < 4:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        a.stop(0)  # a rolling update: a hands back the rasters it was ranking
        with client_of(b) as client:
            done = wait_finished(client, job.name)
            assert (done.state, done.rasters_done) == ("SUCCEEDED", 24)
            assert {q.raster_uri for page in client.queue(done, page_size=100) for q in page} == set(paths)
        # Rasters finished before the stop were not ranked again: at most a's one raster in progress was.
        assert 24 <= strategy_runs(a) + strategy_runs(b) - sum(runs) <= 25
    finally:
        a.stop(0)
        b.stop(0)
