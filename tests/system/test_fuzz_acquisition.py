"""Hostile Acquisition requests: each gets OK or a client error, the server stays healthy, and
another caller's queue comes out exactly as it was.

Ranking with any strategy, patch size, reduction, exclusion window, hint quantile
and click list; uncertainty maps written to hostile paths; queue jobs over hostile
raster references; job names, page sizes, page tokens and patch ids that are
wrong, out of range, someone else's or the fuzzer's own job with a damaged
record.
"""
from __future__ import annotations

import math
import time
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health_pb2_grpc
from hypothesis import event, example, given
from hypothesis import strategies as st

from dial.acquisition import STRATEGIES
from dial.imagery.raster import GeoTiffWriter
from dial.imagery.georef import GeoReference
from tests.support.synthetic import make_scene
from dial_client.wire import acquisition_pb2, acquisition_pb2_grpc, common_pb2
from dial_services.acquisition.job_store import JobRecord, JobStore
from tests.support.hostile_requests import (
    CLIENT_ERRORS, FUZZ, MODEL_NAMES, SIDES, assert_healthy, clicks, images, mostly, planted_rasters)

MAX_CLICKS = 64
# FAILED_PRECONDITION: a strategy whose head the model has not been trained with, or a queue not yet ranked;
# PERMISSION_DENIED: a path outside the server's raster roots; DATA_LOSS: the fuzzer's own damaged job.
# ALREADY_EXISTS: the same output named again without overwrite.
ERRORS = CLIENT_ERRORS | {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED,
                          grpc.StatusCode.DATA_LOSS, grpc.StatusCode.ALREADY_EXISTS}
DAMAGED_JOB = "queueJobs/00000000000000aa"
FUZZER = (("caller", "fuzzer"),)
BYSTANDER = (("caller", "bystander"),)
U32 = st.one_of(st.integers(0, 300), st.sampled_from([2**31, 2**32 - 1]))
# Every strategy twice over, so that four draws in five name a real one.
STRATEGY_NAMES = st.sampled_from(sorted(STRATEGIES) * 2 + ["", "ENTROPY", "entropy\x00", "x" * 3000])
QUANTILES = mostly(0.0, st.one_of(st.sampled_from([0.5, 0.999]), st.floats(allow_nan=True, allow_infinity=True)))


def wait_finished(stub, name: str, metadata) -> acquisition_pb2.QueueJob:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = stub.GetQueueJob(acquisition_pb2.GetQueueJobRequest(name=name), timeout=30, metadata=metadata)
        if job.state not in (acquisition_pb2.QueueJob.PENDING, acquisition_pb2.QueueJob.RUNNING):
            return job
        time.sleep(0.05)
    raise AssertionError(f"{name} did not finish")


def all_patches(stub, name: str, metadata) -> list:
    pages, token = [], ""
    while True:
        reply = stub.ListQueuePatches(acquisition_pb2.ListQueuePatchesRequest(parent=name, page_token=token,
                                                                              page_size=4),
                                      timeout=30, metadata=metadata)
        pages += list(reply.patches)
        if not (token := reply.next_page_token):
            return pages


@pytest.fixture(scope="module")
def fuzz_target(tiny_repo, tiny_manifest, tmp_path_factory):
    """An Acquisition server, a raster it may read, a SUCCEEDED job of the fuzzer's and one of a bystander's."""
    from dial_services.acquisition.main import AcquisitionConfig, start

    root = tmp_path_factory.mktemp("fuzz-acquisition")
    rasters = root / "rasters"
    rasters.mkdir()
    image = make_scene(96, 96, seed=4).image
    raster = rasters / "scene.tif"
    with GeoTiffWriter(raster, height=96, width=96, bands=image.shape[2], dtype="uint8",
                       geo=GeoReference("EPSG:32633", (0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0))) as writer:
        writer.write(image, 0, 0)
    planted, planted_outputs = planted_rasters(rasters, image.shape[2])
    # A job of the fuzzer's own whose record is truncated on disk, still PENDING: it must hold up no one.
    store = JobStore(root / "jobs")
    store.create(JobRecord(DAMAGED_JOB.split("/")[1], "fuzzer", b"", (str(raster),), 0, time.time(), time.time()))
    record = store.folder(DAMAGED_JOB.split("/")[1]) / "job.json"
    record.write_text(record.read_text()[:60])
    config = AcquisitionConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, raster_roots=(rasters,),
                               provider="cpu", max_clicks=MAX_CLICKS, max_image_px=256 * 256,
                               job_store=root / "jobs", session_store=root / "sessions", max_rasters_per_job=6,
                               max_live_jobs_per_caller=3)
    running = start(config)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub = acquisition_pb2_grpc.AcquisitionStub(channel)
    spec = acquisition_pb2.QueueJobSpec(rasters=[common_pb2.RasterReference(uri=str(raster))],
                                        model=common_pb2.ModelRef(name="tiny"), strategy="entropy",
                                        patch_size_px=32)
    jobs = {}
    for who, metadata in (("fuzzer", FUZZER), ("bystander", BYSTANDER)):
        job = stub.CreateQueueJob(acquisition_pb2.CreateQueueJobRequest(spec=spec), timeout=30, metadata=metadata)
        jobs[who] = wait_finished(stub, job.name, metadata)
        assert jobs[who].state == acquisition_pb2.QueueJob.SUCCEEDED
    yield {"stub": stub, "health": health_pb2_grpc.HealthStub(channel), "manifest": tiny_manifest,
           "raster": str(raster), "jobs": jobs, "planted": planted, "planted_outputs": planted_outputs}
    channel.close()
    running.stop(0)


SEEN: Counter = Counter()


def call(method, request, metadata=FUZZER):
    """The reply, or None after a client error; anything else fails the test."""
    try:
        reply = method(request, timeout=60, metadata=metadata)
        if hasattr(reply, "__iter__") and not hasattr(reply, "DESCRIPTOR"):
            reply = list(reply)  # a stream's errors arrive while it is read
    except grpc.RpcError as error:
        event(error.code().name)
        SEEN[error.code().name] += 1
        assert error.code() in ERRORS, (error.code(), error.details())
        assert "Traceback" not in (error.details() or "")
        assert len(error.details() or "") < 2000  # never the caller's unbounded input echoed back
        return None
    event("OK")
    SEEN["OK"] += 1
    return reply


def reached_deep_code() -> bool:
    """Some requests were served and some refused: the corpus is neither all garbage nor all tame."""
    served, refused = SEEN["OK"], sum(SEEN.values()) - SEEN["OK"]
    SEEN.clear()
    return served > 0 and refused > 0


def overlap(a, b) -> bool:
    (ar, ac, ah, aw), (br, bc, bh, bw) = a, b
    return ar < br + bh and br < ar + ah and ac < bc + bw and bc < ac + aw


def raster_uris(raster: str, planted: list[str]) -> st.SearchStrategy:
    """``planted``: files in the root that make GDAL read elsewhere, and paths the file system refuses."""
    return mostly(raster, st.sampled_from(["", "/etc/passwd", raster + ".missing", f"file://{raster}",
                                          "s3://bucket/scene.tif", "../../etc/shadow", "x" * 5000, "\x00",
                                          *planted]))


def windows() -> st.SearchStrategy:
    return st.builds(common_pb2.Window, row_off=U32, col_off=U32, height=U32, width=U32)


def test_hostile_rank_requests_get_client_errors(fuzz_target):
    stub, manifest = fuzz_target["stub"], fuzz_target["manifest"]

    @FUZZ
    # One request that must be served, whatever the random draws: the corpus is also checked to reach it.
    @example(source="raster", image=None, uri=fuzz_target["raster"], session="", strategy="entropy", patch=32,
             reduction=0, max_patches=3, exclude=[common_pb2.Window(row_off=0, col_off=0, height=32, width=32)],
             quantile=0.0, click_list=[], cost=True)
    @given(source=st.sampled_from(["image", "image", "raster", "raster", "session", "none"]),
           image=images(manifest), uri=raster_uris(fuzz_target["raster"], fuzz_target["planted"]),
           session=st.sampled_from(["sessions/" + "0" * 32, "sessions/x", "", "x" * 3000]),
           strategy=STRATEGY_NAMES, patch=mostly(32, SIDES), reduction=mostly(0, st.sampled_from([2, 3, 2**31 - 1])),
           max_patches=U32, exclude=mostly([], st.lists(windows(), max_size=4)), quantile=QUANTILES,
           click_list=mostly([], clicks(MAX_CLICKS)), cost=st.booleans())
    def check(source, image, uri, session, strategy, patch, reduction, max_patches, exclude, quantile,
              click_list, cost):
        request = acquisition_pb2.RankPatchesRequest(
            model=common_pb2.ModelRef(name="tiny"), strategy=strategy, patch_size_px=patch, reduction=reduction,
            max_patches=max_patches, exclude=exclude, hint_quantile=quantile, clicks=click_list,
            cost_weighting=cost)
        if source == "image":
            request.image.CopyFrom(image)
        elif source == "raster":
            request.raster.uri = uri
        elif source == "session":
            request.session = session
        patches = call(stub.RankPatches, request)
        if patches is not None:
            assert [p.rank for p in patches] == list(range(1, len(patches) + 1))
            assert max_patches == 0 or len(patches) <= max_patches
            assert all(not math.isnan(p.score) for p in patches)
            boxes = [(p.window.row_off, p.window.col_off, p.window.height, p.window.width) for p in patches]
            assert len(set(boxes)) == len(boxes)
            excluded = [(w.row_off, w.col_off, w.height, w.width) for w in exclude]
            assert not any(overlap(box, skip) for box in boxes for skip in excluded)
        assert_healthy(fuzz_target["health"])

    SEEN.clear()
    check()
    assert reached_deep_code()


def test_hostile_uncertainty_map_requests_get_client_errors(fuzz_target, tmp_path):
    stub, manifest = fuzz_target["stub"], fuzz_target["manifest"]
    inside = str(fuzz_target["raster"]).replace("scene.tif", "map.tif")

    @FUZZ
    @example(source="raster_window", image=None, uri=fuzz_target["raster"],
             window=common_pb2.Window(row_off=8, col_off=16, height=40, width=24), strategy="margin", output=inside)
    @given(source=st.sampled_from(["image", "raster", "raster_window"]), image=images(manifest),
           uri=raster_uris(fuzz_target["raster"], fuzz_target["planted"]), window=windows(), strategy=STRATEGY_NAMES,
           output=st.sampled_from(["", "", "", inside, inside, inside.replace(".tif", ".png"), "/etc/dial-map.tif",
                                   str(tmp_path / "outside.tif"), "../map.tif", fuzz_target["raster"] + "/x.tif",
                                   *fuzz_target["planted_outputs"]]))
    def check(source, image, uri, window, strategy, output):
        request = acquisition_pb2.GetUncertaintyMapRequest(model=common_pb2.ModelRef(name="tiny"), strategy=strategy,
                                                           output_uri=output)
        if source == "image":
            request.image.CopyFrom(image)
        elif source == "raster":
            request.raster.uri = uri
        else:
            request.raster_window.raster.uri = uri
            request.raster_window.window.CopyFrom(window)
        reply = call(stub.GetUncertaintyMap, request)
        if reply is not None and not output:
            assert len(reply.data) == reply.window.height * reply.window.width
        assert_healthy(fuzz_target["health"])

    SEEN.clear()
    check()
    assert reached_deep_code()
    assert not (tmp_path / "outside.tif").exists()


def test_hostile_queue_requests_leave_a_bystanders_queue_as_it_was(fuzz_target):
    stub, jobs = fuzz_target["stub"], fuzz_target["jobs"]
    bystander = jobs["bystander"].name
    before = all_patches(stub, bystander, BYSTANDER)
    own = jobs["fuzzer"].name
    own_ids = [p.id for p in all_patches(stub, own, FUZZER)]
    names = st.sampled_from([own, bystander, "", "queueJobs/", "queueJobs/0123456789abcdef", "queueJobs/../x",
                             "jobs/" + own.split("/")[1], own + "\x00", "x" * 5000, "queueJobs/" + "0" * 20000,
                             DAMAGED_JOB])

    @FUZZ
    @example(kind="list", name=own, uris=[], strategy="", patch=0, reduction=0, budget=0, quantile=0.0, page_size=2,
             token="1", ids=[], model="tiny")
    @given(kind=st.sampled_from(["create", "get", "cancel", "list", "mark"]), name=names,
           uris=st.lists(raster_uris(fuzz_target["raster"], fuzz_target["planted"]), max_size=8), strategy=STRATEGY_NAMES,
           patch=mostly(32, SIDES), reduction=mostly(0, st.sampled_from([3, 2**31 - 1])), budget=U32,
           quantile=QUANTILES, page_size=st.one_of(st.integers(-3, 5), st.sampled_from([-(2**31), 2**31 - 1])),
           token=st.one_of(st.sampled_from(["", "1", "2", "-1", "1e9", "9" * 5000, "abc", "\x00"]),
                           st.integers(0, 40).map(str)),
           ids=st.lists(st.one_of(st.sampled_from(own_ids), st.text(max_size=20)), max_size=5),
           model=mostly("tiny", MODEL_NAMES))
    def check(kind, name, uris, strategy, patch, reduction, budget, quantile, page_size, token, ids, model):
        if kind == "create":
            spec = acquisition_pb2.QueueJobSpec(
                rasters=[common_pb2.RasterReference(uri=u) for u in uris], model=common_pb2.ModelRef(name=model),
                strategy=strategy, max_patches=budget, patch_size_px=patch, reduction=reduction,
                hint_quantile=quantile)
            job = call(stub.CreateQueueJob, acquisition_pb2.CreateQueueJobRequest(spec=spec))
            if job is not None:
                call(stub.CancelQueueJob, acquisition_pb2.CancelQueueJobRequest(name=job.name))
        elif kind == "get":
            call(stub.GetQueueJob, acquisition_pb2.GetQueueJobRequest(name=name))
        elif kind == "cancel":
            call(stub.CancelQueueJob, acquisition_pb2.CancelQueueJobRequest(name=name))
        elif kind == "list":
            reply = call(stub.ListQueuePatches, acquisition_pb2.ListQueuePatchesRequest(
                parent=name, page_size=page_size, page_token=token))
            if reply is not None:
                assert name == own
                assert page_size == 0 or len(reply.patches) <= page_size
        else:
            call(stub.MarkPatchesDone, acquisition_pb2.MarkPatchesDoneRequest(name=name, patch_ids=ids))
        assert_healthy(fuzz_target["health"])

    SEEN.clear()
    check()
    assert reached_deep_code()
    after = stub.GetQueueJob(acquisition_pb2.GetQueueJobRequest(name=bystander), timeout=30, metadata=BYSTANDER)
    assert after.state == acquisition_pb2.QueueJob.SUCCEEDED
    assert all_patches(stub, bystander, BYSTANDER) == before
