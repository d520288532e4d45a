"""Hostile model names, versions and planted repository entries, through the real in-process services.

A model name or version becomes a folder name, and a manifest names files, so
each of these cases tries to make a server read or write outside the model
repository, break the repository for everyone, or serve one caller's export
as another caller's default. Every case checks the status code, that no
message names a server path, that nothing outside was touched, that the
server still answers SERVING, and that a bystander's calls are unchanged.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.reliability.fuzz import MODEL_NAMES_REFUSED, MODEL_VERSIONS_REFUSED
from dial_client.wire import (
    acquisition_pb2, acquisition_pb2_grpc, adapter_pb2, adapter_pb2_grpc, common_pb2, segmenter_pb2,
    segmenter_pb2_grpc,
)

ALICE = (("caller", "alice"),)
BOB = (("caller", "bob"),)
SIZE = 32


def hostile_versions() -> list[str]:
    # The fuzz corpus's refused versions ("²", "٣", "３", 500 digits, "..", ...) and a few more.
    assert {"²", "٣", "３", "1" * 500, ".."} <= set(MODEL_VERSIONS_REFUSED)
    return [*MODEL_VERSIONS_REFUSED, "१", "1/../1", "+1", " 1"]


@pytest.fixture()
def tree(tiny_repo, tmp_path):
    """A model repository next to a raster root and an outside folder, with planted entries.

    ``rasters/evil/1`` is a valid model that only a path can reach; the
    repository holds entries whose manifests point outside, link outside, or
    cannot be parsed at all; ``outside/`` holds files that must stay as they are.
    """
    models, rasters, outside = tmp_path / "models", tmp_path / "rasters", tmp_path / "outside"
    shutil.copytree(tiny_repo, models)
    rasters.mkdir()
    outside.mkdir()
    good = models / "tiny" / "1"
    shutil.copytree(good, rasters / "evil" / "1")
    (outside / "victim.onnx").write_bytes(b"not to be overwritten")
    shutil.copy(good / "weights.pt", outside / "weights.pt")

    def plant(name, **changes):
        folder = models / name / "1"
        shutil.copytree(good, folder)
        (folder / "model.onnx").unlink()  # so a load would have to export it again
        data = json.loads((folder / "manifest.json").read_text())
        data.update(name=name, **changes)
        (folder / "manifest.json").write_text(json.dumps(data))
        return folder

    plant("abs-onnx", onnx_file=str(outside / "victim.onnx"))
    plant("dotdot-onnx", onnx_file="../../../outside/victim.onnx")
    plant("abs-weights", weights_file=str(outside / "weights.pt"))
    plant("dotdot-weights", weights_file="../../../outside/weights.pt")
    linked = plant("linked-weights")
    (linked / "weights.pt").unlink()
    (linked / "weights.pt").symlink_to(outside / "weights.pt")
    # Unparseable entries: a Unicode-digit version, a word for a version, bad JSON, a name the rule refuses.
    for version in ("²", "latest"):
        shutil.copytree(good, models / "tiny" / version)
    (models / "broken" / "1").mkdir(parents=True)
    (models / "broken" / "1" / "manifest.json").write_text("{ truncated")
    shutil.copytree(good, models / "UPPER" / "1")
    return {"tmp": tmp_path, "models": models, "rasters": rasters, "outside": outside,
            "outside_before": snapshot(outside), "rasters_before": listing(rasters)}


def snapshot(folder: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def assert_outside_untouched(tree) -> None:
    assert snapshot(tree["outside"]) == tree["outside_before"]
    assert listing(tree["rasters"]) == tree["rasters_before"]


def assert_serving(channel) -> None:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def refused(method, request, tree, metadata=ALICE) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        result = method(request, timeout=60, metadata=metadata)
        if isinstance(result, grpc.Call):
            list(result)  # a server stream fails on its first read
    error = raised.value
    details = error.details() or ""
    for path in {str(tree["tmp"]), str(tree["tmp"].resolve())}:
        assert path not in details, details
    assert "Traceback" not in details and len(details) < 2000, details
    return error


def image_proto(manifest, seed=0) -> common_pb2.Image:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 255, (SIZE, SIZE, manifest.n_bands), dtype=np.uint8).tobytes()
    return common_pb2.Image(data=data, dtype=common_pb2.DATA_TYPE_UINT8, height=SIZE, width=SIZE,
                            bands=manifest.n_bands)


@pytest.fixture()
def segmenter(tree):
    from dial_services.segmenter.config import SegmenterConfig
    from dial_services.segmenter.main import start

    running = start(SegmenterConfig(host="127.0.0.1", port=0, model_repo=tree["models"],
                                    model_cache=tree["tmp"] / "cache", raster_roots=(tree["rasters"],),
                                    max_queue_delay_ms=1.0, provider="cpu"))
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    yield segmenter_pb2_grpc.SegmenterStub(channel), channel
    channel.close()
    running.stop(0)


def bystander_predict(stub, manifest) -> tuple[str, bytes]:
    reply = stub.Predict(segmenter_pb2.PredictRequest(model=common_pb2.ModelRef(name="tiny"),
                                                      image=image_proto(manifest, seed=7)),
                         timeout=60, metadata=BOB)
    return reply.model.version, reply.class_map.data


def test_a_segmenter_starts_on_a_repository_with_unparseable_and_planted_entries(segmenter, tree, tiny_manifest):
    stub, channel = segmenter
    assert_serving(channel)
    listed = stub.ListModels(segmenter_pb2.ListModelsRequest(), timeout=60)
    assert [(m.name, m.version) for m in listed.models] == [("tiny", "1")]
    assert stub.GetModel(segmenter_pb2.GetModelRequest(model=common_pb2.ModelRef(name="tiny")),
                         timeout=60).version == "1"
    assert bystander_predict(stub, tiny_manifest)[0] == "1"
    # An entry that turns bad while serving is skipped too; the others keep answering.
    shutil.copytree(tree["models"] / "tiny" / "1", tree["models"] / "tiny" / "٣")
    (tree["models"] / "tiny" / "2").mkdir()
    (tree["models"] / "tiny" / "2" / "manifest.json").write_bytes(b"\x00\xff")
    listed = stub.ListModels(segmenter_pb2.ListModelsRequest(), timeout=60)
    assert [(m.name, m.version) for m in listed.models] == [("tiny", "1")]
    assert bystander_predict(stub, tiny_manifest)[0] == "1"
    assert_serving(channel)


def test_model_names_that_are_paths_are_invalid_arguments(segmenter, tree, tiny_manifest):
    stub, channel = segmenter
    before = bystander_predict(stub, tiny_manifest)
    names = [*MODEL_NAMES_REFUSED, "../../rasters/evil", str(tree["rasters"] / "evil"), str(tree["models"] / "tiny"),
             "tiny\x00"]
    for name in names:
        ref = common_pb2.ModelRef(name=name)
        for method, request in ((stub.Predict, segmenter_pb2.PredictRequest(model=ref, image=image_proto(tiny_manifest))),
                                (stub.GetModel, segmenter_pb2.GetModelRequest(model=ref))):
            error = refused(method, request, tree)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (name[:50], error.details())
            assert "model.name" in error.details()
    assert bystander_predict(stub, tiny_manifest) == before
    assert_outside_untouched(tree)
    assert_serving(channel)


def test_versions_must_be_ascii_numbers(segmenter, tree, tiny_manifest):
    stub, channel = segmenter
    before = bystander_predict(stub, tiny_manifest)
    for version in hostile_versions():
        ref = common_pb2.ModelRef(name="tiny", version=version)
        for method, request in ((stub.Predict, segmenter_pb2.PredictRequest(model=ref, image=image_proto(tiny_manifest))),
                                (stub.GetModel, segmenter_pb2.GetModelRequest(model=ref))):
            error = refused(method, request, tree)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (version[:20], error.details())
            assert "model.version" in error.details()
    assert bystander_predict(stub, tiny_manifest) == before
    assert_serving(channel)


def test_planted_manifests_cannot_reach_outside_their_version_folder(segmenter, tree, tiny_manifest):
    stub, channel = segmenter
    before = bystander_predict(stub, tiny_manifest)
    for name in ("abs-onnx", "dotdot-onnx", "abs-weights", "dotdot-weights", "linked-weights"):
        for version in ("", "1"):
            ref = common_pb2.ModelRef(name=name, version=version)
            for method, request in ((stub.Predict, segmenter_pb2.PredictRequest(
                    model=ref, image=image_proto(tiny_manifest))), (stub.GetModel, segmenter_pb2.GetModelRequest(
                    model=ref))):
                error = refused(method, request, tree)
                # Skipped by the scan: not served unpinned, and unusable (with the reason) when pinned.
                assert error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION), \
                    (name, version, error.code(), error.details())
                if version:
                    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
                    assert "version folder" in error.details(), error.details()
    for name in ("broken", "UPPER"):
        error = refused(stub.Predict, segmenter_pb2.PredictRequest(model=common_pb2.ModelRef(name=name),
                                                                   image=image_proto(tiny_manifest)), tree)
        expected = grpc.StatusCode.FAILED_PRECONDITION if name == "broken" else grpc.StatusCode.INVALID_ARGUMENT
        assert error.code() == expected, error.details()
    assert_outside_untouched(tree)
    assert not (tree["tmp"] / "cache").exists() or all(
        p.resolve().is_relative_to((tree["tmp"] / "cache").resolve()) for p in (tree["tmp"] / "cache").rglob("*"))
    assert bystander_predict(stub, tiny_manifest) == before
    assert_serving(channel)


def test_a_negative_page_size_is_an_invalid_argument(segmenter, tree):
    stub, channel = segmenter
    for size in (-1, -1000, -(2**31)):
        error = refused(stub.ListModels, segmenter_pb2.ListModelsRequest(page_size=size), tree)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_size" in error.details()
    page = stub.ListModels(segmenter_pb2.ListModelsRequest(page_size=1), timeout=60)
    assert [m.name for m in page.models] == ["tiny"] and page.next_page_token == ""
    assert_serving(channel)


# -- the Adapter and Acquisition take the same names -----------------------------

@pytest.fixture()
def services(tree):
    """An Adapter, an Acquisition and a Segmenter sharing the planted repository and one session store."""
    from dial_services.acquisition.main import AcquisitionConfig, start as start_acquisition
    from dial_services.adapter.config import AdapterConfig
    from dial_services.adapter.main import start as start_adapter
    from dial_services.segmenter.config import SegmenterConfig
    from dial_services.segmenter.main import start as start_segmenter

    store = tree["tmp"] / "sessions"
    adapter = start_adapter(AdapterConfig(host="127.0.0.1", port=0, model_repo=tree["models"], session_store=store,
                                          adaptation_steps=1, crop_px=32, raster_roots=(tree["rasters"],)))
    acquisition = start_acquisition(AcquisitionConfig(
        host="127.0.0.1", port=0, model_repo=tree["models"], session_store=store, provider="cpu",
        raster_roots=(tree["rasters"],), job_store=tree["tmp"] / "jobs"))
    segmenter = start_segmenter(SegmenterConfig(host="127.0.0.1", port=0, model_repo=tree["models"],
                                                raster_roots=(tree["rasters"],), max_queue_delay_ms=1.0,
                                                provider="cpu"))
    channels = [grpc.insecure_channel(f"127.0.0.1:{s.port}") for s in (adapter, acquisition, segmenter)]
    yield {"adapter": adapter_pb2_grpc.AdapterStub(channels[0]),
           "acquisition": acquisition_pb2_grpc.AcquisitionStub(channels[1]),
           "segmenter": segmenter_pb2_grpc.SegmenterStub(channels[2]), "channels": channels}
    for channel in channels:
        channel.close()
    for running in (segmenter, acquisition, adapter):
        running.stop(0)


def create_session(adapter, manifest, metadata, version="") -> adapter_pb2.Session:
    return adapter.CreateSession(adapter_pb2.CreateSessionRequest(
        model=common_pb2.ModelRef(name="tiny", version=version), image=image_proto(manifest, seed=3)),
        timeout=60, metadata=metadata)


def test_adapter_and_acquisition_refuse_hostile_model_names(services, tree, tiny_manifest):
    adapter, acquisition = services["adapter"], services["acquisition"]
    bystander = create_session(adapter, tiny_manifest, BOB)
    refs = [common_pb2.ModelRef(name=n) for n in ("../rasters/evil", str(tree["models"] / "tiny"), "tiny/../tiny")]
    refs += [common_pb2.ModelRef(name="tiny", version=v) for v in hostile_versions()]
    for ref in refs:
        error = refused(adapter.CreateSession, adapter_pb2.CreateSessionRequest(
            model=ref, image=image_proto(tiny_manifest)), tree)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (ref.name[:40], ref.version[:20], error.details())
        error = refused(acquisition.GetUncertaintyMap, acquisition_pb2.GetUncertaintyMapRequest(
            model=ref, strategy="entropy", image=image_proto(tiny_manifest)), tree)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (ref.name[:40], ref.version[:20], error.details())
        error = refused(acquisition.RankPatches, acquisition_pb2.RankPatchesRequest(
            model=ref, strategy="entropy", image=image_proto(tiny_manifest)), tree)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (ref.name[:40], ref.version[:20], error.details())
        error = refused(acquisition.CreateQueueJob, acquisition_pb2.CreateQueueJobRequest(
            spec=acquisition_pb2.QueueJobSpec(model=ref, strategy="entropy", rasters=[
                common_pb2.RasterReference(uri=str(tree["rasters"] / "none.tif"))])), tree)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (ref.name[:40], ref.version[:20], error.details())
    assert adapter.GetSession(adapter_pb2.GetSessionRequest(name=bystander.name), timeout=60,
                              metadata=BOB) == bystander
    assert_outside_untouched(tree)
    for channel in services["channels"]:
        assert_serving(channel)


def test_exports_need_a_plain_name_and_an_ascii_version(services, tree, tiny_manifest):
    adapter = services["adapter"]
    session = create_session(adapter, tiny_manifest, ALICE)
    repository_before = listing(tree["models"])
    cases = [common_pb2.ModelRef(name="tiny", version=v) for v in [*hostile_versions(), ""]]
    cases += [common_pb2.ModelRef(name=n, version="1") for n in
              ("../rasters/evil", "../../outside/evil", str(tree["outside"] / "evil"), "a/b", "", "x" * 20_000)]
    for ref in cases:
        error = refused(adapter.ExportSessionModel, adapter_pb2.ExportSessionModelRequest(
            name=session.name, model=ref), tree)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (ref.name[:40], ref.version[:20], error.details())
    assert listing(tree["models"]) == repository_before
    assert_outside_untouched(tree)
    # The repository still answers everyone, so nothing was half-written.
    listed = services["segmenter"].ListModels(segmenter_pb2.ListModelsRequest(), timeout=60)
    assert [(m.name, m.version) for m in listed.models] == [("tiny", "1")]
    for channel in services["channels"]:
        assert_serving(channel)


def test_one_callers_export_is_not_another_callers_default(services, tree, tiny_manifest):
    from dial.model.repository import ModelRepository

    adapter, segmenter = services["adapter"], services["segmenter"]
    before = bystander_predict(segmenter, tiny_manifest)
    assert before[0] == "1"
    session = create_session(adapter, tiny_manifest, ALICE)
    adapter.AddClicks(adapter_pb2.AddClicksRequest(name=session.name, clicks=[
        common_pb2.Click(pixel=common_pb2.PixelPoint(row=5, col=5), class_id=1)]), timeout=60, metadata=ALICE)
    adapter.Adapt(adapter_pb2.AdaptRequest(name=session.name), timeout=120, metadata=ALICE)
    for ref in (common_pb2.ModelRef(name="tiny", version="2"), common_pb2.ModelRef(name="alice-tiny", version="1")):
        exported = adapter.ExportSessionModel(adapter_pb2.ExportSessionModelRequest(name=session.name, model=ref),
                                              timeout=120, metadata=ALICE)
        assert (exported.name, exported.version) == (ref.name, ref.version)
    # Bob's unpinned calls are served what they were served before, everywhere.
    assert bystander_predict(segmenter, tiny_manifest) == before
    assert segmenter.GetModel(segmenter_pb2.GetModelRequest(model=common_pb2.ModelRef(name="tiny")),
                              timeout=60, metadata=BOB).version == "1"
    assert create_session(adapter, tiny_manifest, BOB).model.version == "1"
    error = refused(segmenter.Predict, segmenter_pb2.PredictRequest(
        model=common_pb2.ModelRef(name="alice-tiny"), image=image_proto(tiny_manifest)), tree, metadata=BOB)
    assert error.code() == grpc.StatusCode.NOT_FOUND and "alice-tiny:1" in error.details()
    # The export is there for whoever pins it, and listed.
    pinned = segmenter.Predict(segmenter_pb2.PredictRequest(model=common_pb2.ModelRef(name="tiny", version="2"),
                                                            image=image_proto(tiny_manifest, seed=7)),
                               timeout=60, metadata=ALICE)
    assert pinned.model.version == "2"
    listed = segmenter.ListModels(segmenter_pb2.ListModelsRequest(), timeout=60)
    assert [(m.name, m.version) for m in listed.models] == [("alice-tiny", "1"), ("tiny", "1"), ("tiny", "2")]
    # An operator's promotion is what makes it the default.
    ModelRepository(tree["models"]).promote("tiny:2")
    deadline = time.monotonic() + 30
    while bystander_predict(segmenter, tiny_manifest)[0] != "2":
        assert time.monotonic() < deadline, "the promoted version never became latest"
        time.sleep(0.2)
    for channel in services["channels"]:
        assert_serving(channel)
