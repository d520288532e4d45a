"""The Acquisition service over a real in-process gRPC channel, through AcquisitionClient."""
from __future__ import annotations

import re

import time

import grpc
import numpy as np
import pytest
import rasterio

from dial.imagery.raster import GeoTiffWriter
from dial.imagery.georef import GeoReference
from tests.support.synthetic import make_scene
from dial_client import (
    AcquisitionClient, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted)
from dial_client.wire import acquisition_pb2, acquisition_pb2_grpc

GEO = GeoReference("EPSG:32633", (0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0))


@pytest.fixture()
def acquisition(tiny_repo, raster_root):
    from dial_services.acquisition.main import AcquisitionConfig, start

    config = AcquisitionConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, raster_roots=(raster_root,),
                               provider="cpu", default_page_size=3,
                               session_store=raster_root.parent / "no-sessions",
                               job_store=raster_root.parent / "queue-jobs", max_rasters_per_job=4)
    running = start(config)
    with AcquisitionClient(f"127.0.0.1:{running.port}", timeout=120, retries=0) as client:
        yield client, running
    running.stop(0)


def scene_image(size=128, seed=0):
    return make_scene(size, size, seed=seed).image


def write_raster(root, name, image, geo=GEO):
    path = root / name
    with GeoTiffWriter(path, height=image.shape[0], width=image.shape[1], bands=image.shape[2], dtype="uint8",
                       geo=geo) as writer:
        writer.write(image, 0, 0)
    return path


def wait_finished(client, name, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = client.job(name)
        if job.finished:
            return job
        time.sleep(0.1)
    raise AssertionError(f"{name} did not finish")


def test_rank_streams_non_overlapping_patches_best_first(acquisition):
    client, _ = acquisition
    patches = client.rank(scene_image(), model="tiny", strategy="entropy", patch_size=32)
    assert [p.rank for p in patches] == list(range(1, 17))
    assert all(a.score >= b.score for a, b in zip(patches, patches[1:]))
    assert len({p.window for p in patches}) == 16
    assert all(p.estimated_click_cost >= 1 and p.hints for p in patches)
    top = client.rank(scene_image(), model="tiny", strategy="entropy", patch_size=32, max_patches=3,
                      exclude=[patches[0].window])
    assert len(top) == 3 and top[0].window == patches[1].window


def test_rank_with_clicks_scores_the_prediction_the_user_sees(acquisition, tiny_repo):
    from dial.acquisition import AcquisitionModel, get_strategy, rank_patches
    from dial.clicks import Click as CoreClick
    from dial.model.repository import ModelRepository
    from dial_client import Click

    client, _ = acquisition
    image = scene_image()
    clicks = [Click(10, 10, 1), Click(100, 40, 3), Click(60, 90, 5)]
    plain = client.rank(image, model="tiny", strategy="entropy", patch_size=32)
    clicked = client.rank(image, model="tiny", strategy="entropy", patch_size=32, clicks=clicks)
    assert [p.score for p in clicked] != pytest.approx([p.score for p in plain], abs=1e-6)
    # The same ranking as the core's, computed with the clicks as input channels.
    model = AcquisitionModel.from_repository(ModelRepository(tiny_repo), "tiny")
    strategy = get_strategy("entropy")
    core = rank_patches(strategy, strategy.compute(model, image, [CoreClick(c.row, c.col, c.class_id) for c in clicks]),
                        patch_px=32)
    assert [p.window for p in clicked] == [p.window for p in core]
    assert [p.score for p in clicked] == pytest.approx([p.score for p in core], abs=1e-5)

    with pytest.raises(InvalidArgument) as error:
        client.rank(image, model="tiny", clicks=[Click(200, 5, 1), Click(5, 5, 9)])
    assert {v.field for v in error.value.field_violations} == {"clicks[0].pixel", "clicks[1].class_id"}


@pytest.fixture()
def adapter_and_acquisition(tiny_repo, tmp_path):
    """An Adapter and an Acquisition server sharing one session store, as `dial up` and the manifests run them."""
    from dial_services.acquisition.main import AcquisitionConfig, start as start_acquisition
    from dial_services.adapter.config import AdapterConfig
    from dial_services.adapter.main import start as start_adapter

    store = tmp_path / "sessions"
    adapter = start_adapter(AdapterConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, session_store=store,
                                          adaptation_steps=5, crop_px=64, learning_rate=3e-2))
    acquisition = start_acquisition(AcquisitionConfig(host="127.0.0.1", port=0, model_repo=tiny_repo,
                                                      session_store=store, provider="cpu"))
    yield f"127.0.0.1:{adapter.port}", f"127.0.0.1:{acquisition.port}"
    acquisition.stop(0)
    adapter.stop(0)


def margin(probabilities: np.ndarray) -> np.ndarray:
    """MetaSeg's D = 1 - p1 + p2, of the probabilities as a client receives them."""
    ranked = np.sort(probabilities, axis=0)
    return 1.0 - ranked[-1] + ranked[-2]


def margin_scores(probabilities: np.ndarray, patch: int) -> dict:
    values = margin(probabilities)
    return {(r, c, patch, patch): float(values[r:r + patch, c:c + patch].mean())
            for r in range(0, values.shape[0], patch) for c in range(0, values.shape[1], patch)}


def test_rank_a_session_follows_its_adapted_weights_and_clicks(adapter_and_acquisition):
    from dial_client import AdapterClient, Click

    adapter_address, acquisition_address = adapter_and_acquisition
    image = scene_image()
    clicks = [Click(10, 10, 1), Click(100, 40, 3), Click(60, 90, 5)]
    with AdapterClient(adapter_address, caller="alice") as adapter, \
            AcquisitionClient(acquisition_address, caller="alice", retries=0) as acquisition:
        session = adapter.create_session(image, model="tiny", variant="fast")
        session.add_clicks(clicks)
        session.adapt()
        ranked = acquisition.rank(session, strategy="margin", patch_size=32)
        # What the session itself predicts, adapted weights and clicks together, read from the Adapter:
        # its margins (from 8-bit probabilities, so to within 2/255) are the scores Acquisition ranks by.
        seen = margin_scores(session.predict(return_probabilities=True).probabilities, 32)
        assert {p.window: p.score for p in ranked} == pytest.approx(seen, abs=0.01)
        assert [p.rank for p in ranked] == list(range(1, 17))
        # The served model with the same clicks is a different ranking: the adaptation is not ignored.
        served = acquisition.rank(image, model="tiny", strategy="margin", patch_size=32, clicks=clicks)
        assert {p.window: p.score for p in served} != pytest.approx(seen, abs=0.01)
        # The session's uncertainty map is the same measurement, pixel by pixel (to within two 8-bit steps).
        values = acquisition.uncertainty_map(session, strategy="margin").values
        assert np.abs(values - margin(session.predict(return_probabilities=True).probabilities)).max() < 0.02
        # A further click and adaptation moves the ranking with it.
        session.add_clicks([Click(120, 120, 2)])
        session.adapt()
        again = acquisition.rank(session.get(), strategy="margin", patch_size=32, model="tiny", version="1")
        assert {p.window: p.score for p in again} == pytest.approx(
            margin_scores(session.predict(return_probabilities=True).probabilities, 32), abs=0.01)
        assert [p.score for p in again] != pytest.approx([p.score for p in ranked], abs=1e-4)
        # Reading the session for a ranking leaves it as it was.
        before = session.get()
        acquisition.rank(session, strategy="entropy", patch_size=64, max_patches=1)
        after = session.get()
        assert (after.clicks, after.adaptation_count, after.update_time) == (
            before.clicks, before.adaptation_count, before.update_time)


def test_rank_a_session_refuses_what_it_cannot_rank(adapter_and_acquisition):
    from dial_client import AdapterClient, Click
    from dial_client.wire import acquisition_pb2

    adapter_address, acquisition_address = adapter_and_acquisition
    with AdapterClient(adapter_address, caller="alice") as adapter, \
            AcquisitionClient(acquisition_address, caller="alice", retries=0) as alice, \
            AcquisitionClient(acquisition_address, caller="bob", retries=0) as bob:
        session = adapter.create_session(scene_image(), model="tiny")
        with pytest.raises(NotFound):
            bob.rank(session, strategy="entropy")
        with pytest.raises(NotFound):
            bob.uncertainty_map(session, strategy="entropy")
        with pytest.raises(InvalidArgument) as error:
            alice.rank(session, strategy="entropy", clicks=[Click(5, 5, 1)], model="other")
        assert {v.field for v in error.value.field_violations} == {"clicks"}
        with pytest.raises(InvalidArgument) as error:
            alice.rank(session, strategy="entropy", model="tiny", version="7")
        assert {v.field for v in error.value.field_violations} == {"model"}
        stub = acquisition_pb2_grpc.AcquisitionStub(alice._connection.channel)
        with pytest.raises(grpc.RpcError) as raw:
            list(stub.RankPatches(acquisition_pb2.RankPatchesRequest(session="sessions/nope", strategy="entropy")))
        assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "sessions/{id}" in raw.value.details()
        session.delete()
        with pytest.raises(NotFound):
            alice.rank(session, strategy="entropy")
        # Nothing above disturbed the service or anyone's other sessions.
        other = adapter.create_session(scene_image(seed=1), model="tiny")
        assert len(alice.rank(other, strategy="entropy", patch_size=64)) == 4


def test_rank_a_session_without_a_session_store_is_not_found(acquisition):
    client, _ = acquisition
    request = acquisition_pb2.RankPatchesRequest(session="sessions/" + "0" * 32, strategy="entropy")
    stub = acquisition_pb2_grpc.AcquisitionStub(client._connection.channel)
    with pytest.raises(grpc.RpcError) as raw:
        list(stub.RankPatches(request))
    assert raw.value.code() == grpc.StatusCode.NOT_FOUND and "session store" in raw.value.details()


def test_rank_a_raster_gives_map_bounds_in_its_crs(acquisition, raster_root):
    client, _ = acquisition
    path = write_raster(raster_root, "scene.tif", scene_image())
    patches = client.rank(str(path), model="tiny", strategy="margin", patch_size=64)
    by_window = {p.window: p for p in patches}
    assert by_window[(64, 0, 64, 64)].bounds == (500000.0, 4000000.0 - 64.0, 500032.0, 4000000.0 - 32.0,
                                                 "EPSG:32633")


def test_invalid_requests_name_their_fields(acquisition, raster_root, tmp_path):
    client, _ = acquisition
    with pytest.raises(InvalidArgument) as error:
        client.rank(scene_image(), model="tiny", strategy="bald", hint_quantile=1.5)
    assert {v.field for v in error.value.field_violations} == {"strategy", "hint_quantile"}
    with pytest.raises(InvalidArgument) as error:
        client.rank(scene_image()[..., :1], model="tiny")
    assert "image.bands" in {v.field for v in error.value.field_violations}
    with pytest.raises(NotFound):
        client.rank(scene_image(), model="absent")
    outside = write_raster(tmp_path, "outside.tif", scene_image())
    with pytest.raises(PermissionDenied):
        client.rank(str(outside), model="tiny")
    with pytest.raises(PermissionDenied):
        client.submit_queue([str(outside)], model="tiny")
    with pytest.raises(FailedPrecondition, match="train-confidnet"):
        client.rank(scene_image(), model="tiny", strategy="confidnet")


def test_uncertainty_map_inline_and_as_geotiff(acquisition, raster_root):
    client, _ = acquisition
    image = scene_image()
    inline = client.uncertainty_map(image, model="tiny", strategy="entropy")
    assert inline.values.shape == (128, 128) and inline.window == (0, 0, 128, 128)
    assert 0.0 <= inline.values.min() < inline.values.max() <= 1.0
    path = write_raster(raster_root, "scene.tif", image)
    window = client.uncertainty_map(str(path), model="tiny", strategy="entropy", window=(32, 64, 64, 64))
    assert window.window == (32, 64, 64, 64) and window.values.shape == (64, 64)
    assert window.geo.transform[2] == 500000.0 + 64 * 0.5 and window.geo.transform[5] == 4000000.0 - 32 * 0.5
    out = raster_root / "entropy.tif"
    written = client.uncertainty_map(str(path), model="tiny", strategy="entropy", output_uri=str(out))
    assert written.values is None and written.output_uri == str(out)
    with rasterio.open(out) as ds:
        assert ds.crs.to_string() == "EPSG:32633" and (ds.height, ds.width, ds.dtypes[0]) == (128, 128, "uint8")
        assert np.abs(ds.read(1).astype(int) - np.rint((inline.values - inline.values.min())
                      / np.ptp(inline.values) * 255)).max() <= 1
    with pytest.raises(InvalidArgument):
        client.uncertainty_map(str(path), model="tiny", output_uri=str(raster_root / "map.png"))


def test_queue_pages_ranks_across_rasters_and_forgets_done_patches(acquisition, raster_root):
    client, running = acquisition
    paths = [str(write_raster(raster_root, f"r{i}.tif", scene_image(seed=i))) for i in range(2)]
    job = client.submit_queue(paths, model="tiny", strategy="entropy", patch_size=64, budget=7)
    assert job.state in ("PENDING", "RUNNING", "SUCCEEDED") and job.rasters_total == 2
    job = wait_finished(client, job.name)
    assert (job.state, job.rasters_done) == ("SUCCEEDED", 2)

    pages = list(client.queue(job))
    assert [len(p) for p in pages] == [3, 3, 1]
    queued = [q for page in pages for q in page]
    assert [q.patch.rank for q in queued] == list(range(1, 8))
    assert {q.raster_uri for q in queued} <= set(paths)
    assert all(a.patch.score >= b.patch.score for a, b in zip(queued, queued[1:]))
    assert len({q.id for q in queued}) == 7

    with pytest.raises(InvalidArgument):
        client.mark_done(job, [queued[0].id, "no-such-patch"])
    assert client.mark_done(job, [queued[0].id, queued[3].id]) == 2
    assert client.mark_done(job, [queued[0].id]) == 0
    remaining = [q.id for page in client.queue(job, page_size=100) for q in page]
    assert remaining == [q.id for q in queued if q.id not in (queued[0].id, queued[3].id)]
    # The worker counts the job just after committing SUCCEEDED, so allow it a moment.
    deadline = time.monotonic() + 10
    while 'dial_acquisition_queue_jobs_finished_total{state="SUCCEEDED"} 1.0' not in (
            text := running.metrics.exposition().decode()):
        assert time.monotonic() < deadline, text
        time.sleep(0.01)
    assert "dial_acquisition_queue_jobs_running 0.0" in text


def test_queue_requests_are_validated(acquisition, raster_root):
    client, running = acquisition
    with pytest.raises(NotFound):
        client.job("queueJobs/0123456789abcdef")
    for malformed in ("jobs/0123456789abcdef", "queueJobs/nope", "queueJobs/../../etc"):
        with pytest.raises(InvalidArgument):
            client.job(malformed)
    with pytest.raises(InvalidArgument) as error:
        client.submit_queue([], model="tiny", strategy="nope")
    assert {v.field for v in error.value.field_violations} == {"spec.rasters", "spec.strategy"}
    path = str(write_raster(raster_root, "r.tif", scene_image()))
    job = wait_finished(client, client.submit_queue([path], model="tiny", patch_size=64).name)
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = acquisition_pb2_grpc.AcquisitionStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.ListQueuePatches(acquisition_pb2.ListQueuePatchesRequest(parent=job.name, page_size=-1))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as error:
            stub.ListQueuePatches(acquisition_pb2.ListQueuePatchesRequest(parent=job.name, page_token="x"))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    cancelled = client.cancel(job.name)
    assert cancelled.state == "SUCCEEDED"  # a finished job is returned unchanged
    with pytest.raises(InvalidArgument) as error:
        client.submit_queue([path] * 5, model="tiny")
    assert "between 1 and 4 rasters" in str(error.value)


def test_a_queue_job_is_its_callers_alone(acquisition, raster_root):
    _, running = acquisition
    path = str(write_raster(raster_root, "r.tif", scene_image()))
    address = f"127.0.0.1:{running.port}"
    with AcquisitionClient(address, caller="alice", retries=0) as alice, \
            AcquisitionClient(address, caller="bob", retries=0) as bob:
        job = wait_finished(alice, alice.submit_queue([path], model="tiny", patch_size=64).name)
        first = next(alice.queue(job))[0]
        for call in (lambda: bob.job(job.name), lambda: bob.cancel(job.name), lambda: next(bob.queue(job)),
                     lambda: bob.mark_done(job, [first.id])):
            with pytest.raises(NotFound):
                call()
        assert alice.mark_done(job, [first.id]) == 1  # bob's attempt marked nothing
        assert alice.job(job.name).state == "SUCCEEDED"


def test_a_caller_with_too_many_live_jobs_is_told_to_wait(tiny_repo, raster_root):
    from dial_services.acquisition.main import AcquisitionConfig, start

    path = str(write_raster(raster_root, "r.tif", scene_image()))
    running = start(AcquisitionConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, raster_roots=(raster_root,),
                                      provider="cpu", job_store=raster_root.parent / "jobs",
                                      max_live_jobs_per_caller=1, session_store=raster_root.parent / "none"))
    try:
        with AcquisitionClient(f"127.0.0.1:{running.port}", caller="alice", retries=0) as alice:
            # Two hundred rasters (seconds of work) keep the first job live until it is cancelled.
            first = alice.submit_queue([path] * 200, model="tiny", patch_size=64)
            with pytest.raises(ResourceExhausted) as error:
                alice.submit_queue([path], model="tiny", patch_size=64)
            assert "cancel one" in error.value.message
            alice.cancel(first.name)
            assert wait_finished(alice, first.name).state == "CANCELLED"
            assert wait_finished(alice, alice.submit_queue([path], model="tiny").name).state == "SUCCEEDED"
    finally:
        running.stop(0)


def test_a_failed_job_reports_why_and_lists_nothing(acquisition, raster_root):
    client, _ = acquisition
    path = str(write_raster(raster_root, "r.tif", scene_image()))
    job = wait_finished(client, client.submit_queue([path], model="tiny", strategy="metaseg").name)
    assert job.state == "FAILED" and "train-metaseg" in job.error_message
    # The message a call would get, without the server's exception class names.
    assert not re.search(r"\b[A-Z]\w*(Error|Exception)\b", job.error_message), job.error_message
    with pytest.raises(FailedPrecondition):
        next(client.queue(job))


def test_strategy_time_is_exported_per_strategy(acquisition):
    client, running = acquisition
    client.rank(scene_image(), model="tiny", strategy="margin", patch_size=64)
    text = running.metrics.exposition().decode()
    assert 'dial_acquisition_strategy_seconds_count{strategy="margin"} 1.0' in text


def test_an_unusable_job_store_stops_start_up_with_the_setting_named(tiny_repo, tmp_path):
    from dial_services.acquisition.main import AcquisitionConfig, start
    from dial_services.common.config import ConfigError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="DIAL_JOB_STORE"):
        start(AcquisitionConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, job_store=blocker / "jobs"))


def test_dial_serve_and_up_find_the_service():
    from dial_services.cli import build_parser
    from dial_services.commands.serve import SERVICES

    assert "acquisition" in SERVICES
    args = build_parser().parse_args(["serve", "acquisition", "--port", "0", "--metrics-port", "0",
                                      "--queue-workers", "2"])
    assert (args.port, args.metrics_port, args.queue_workers) == (0, 0, 2)
