"""The segmenter over a real gRPC channel: validation, raster jobs, metadata, metrics."""
from __future__ import annotations

import os
import sys
import time
import shutil
import subprocess
import urllib.request

import grpc
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_points

from tests.support.synthetic import make_scene
from dial_client import (
    Click, DeadlineExceeded, InvalidArgument, MapClick, NotFound, PermissionDenied, SegmenterClient,
)
from dial_client.wire import common_pb2, segmenter_pb2, segmenter_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _stub(address):
    channel = grpc.insecure_channel(address)
    return channel, segmenter_pb2_grpc.SegmenterStub(channel)


def _image(h=64, w=64, bands=3, dtype=common_pb2.DATA_TYPE_UINT8, data=None):
    itemsize = 2 if dtype == common_pb2.DATA_TYPE_UINT16 else 1
    if data is None:
        data = bytes(h * w * bands * itemsize)
    return common_pb2.Image(data=data, dtype=dtype, height=h, width=w, bands=bands)


def _violations(error: grpc.RpcError) -> list[str]:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)
    fields = []
    for detail in status.details if status else []:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return fields


def _predict_error(address, request) -> grpc.RpcError:
    channel, stub = _stub(address)
    with channel:
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=60)
    error = info.value
    assert "Traceback" not in (error.details() or "")
    return error


def _request(**kwargs):
    base = dict(model=common_pb2.ModelRef(name="tiny"), image=_image())
    base.update(kwargs)
    return segmenter_pb2.PredictRequest(**base)


CASES = {
    "wrong byte length": (dict(image=_image(data=b"\x00" * 10)), "image.data"),
    "unknown dtype": (dict(image=_image(dtype=7)), "image.dtype"),
    "unspecified dtype": (dict(image=_image(dtype=0)), "image.dtype"),
    "zero height": (dict(image=_image(h=0)), "image.height"),
    "zero width": (dict(image=_image(w=0)), "image.width"),
    "huge dimensions": (dict(image=common_pb2.Image(dtype=1, height=100000, width=100000, bands=3)), "image"),
    "band count not matching the model": (dict(image=_image(bands=4)), "image.bands"),
    "unsupported band count": (dict(image=_image(bands=2)), "image.bands"),
    "dtype not matching the model": (dict(image=_image(dtype=common_pb2.DATA_TYPE_UINT16)), "image.dtype"),
    "click outside the image": (dict(clicks=[common_pb2.Click(pixel=common_pb2.PixelPoint(row=64, col=3),
                                                              class_id=1)]), "clicks[0].pixel"),
    "unknown class id": (dict(clicks=[common_pb2.Click(pixel=common_pb2.PixelPoint(row=1, col=1), class_id=6)]),
                         "clicks[0].class_id"),
    "click without a location": (dict(clicks=[common_pb2.Click(class_id=1)]), "clicks[0]"),
    "map click on an image without georeference": (
        dict(clicks=[common_pb2.Click(map=common_pb2.MapPoint(x=1, y=2, crs="EPSG:4326"), class_id=1)]),
        "clicks[0].map"),
    "map click with NaN coordinates": (
        dict(image=common_pb2.Image(data=bytes(64 * 64 * 3), dtype=1, height=64, width=64, bands=3,
                                    geo=common_pb2.GeoReference(crs="EPSG:32633",
                                                                transform=[1, 0, 0, 0, -1, 64])),
             clicks=[common_pb2.Click(map=common_pb2.MapPoint(x=float("nan"), y=2), class_id=1)]),
        "clicks[0].map"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_requests_get_invalid_argument_with_the_field(segmenter, case):
    address, _ = segmenter
    kwargs, field = CASES[case]
    error = _predict_error(address, _request(**kwargs))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in _violations(error)


def test_unknown_model_is_not_found(segmenter):
    address, _ = segmenter
    error = _predict_error(address, _request(model=common_pb2.ModelRef(name="nope")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in error.details()
    error = _predict_error(address, _request(model=common_pb2.ModelRef(name="tiny", version="9")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_missing_model_name_is_invalid(segmenter):
    address, _ = segmenter
    error = _predict_error(address, _request(model=common_pb2.ModelRef()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "model.name" in _violations(error)


def test_client_raises_typed_errors_with_field_violations(segmenter):
    address, _ = segmenter
    with SegmenterClient(address, retries=0) as client:
        with pytest.raises(InvalidArgument) as info:
            client.predict(np.zeros((32, 32, 4), np.uint8), model="tiny")
        assert [v.field for v in info.value.field_violations] == ["image.bands"]
        with pytest.raises(NotFound):
            client.predict(np.zeros((32, 32, 3), np.uint8), model="missing")


@pytest.mark.parametrize("uri", [
    "/etc/passwd",
    "{root}/../../etc/passwd",
    "file:///etc/hostname",
    "http://example.com/a.tif",
    "s3://bucket/a.tif",
    "/vsicurl/http://example.com/a.tif",
    "file://otherhost{root}/a.tif",
])
def test_raster_uris_outside_the_allowed_roots_are_denied(segmenter, raster_root, uri):
    address, _ = segmenter
    with SegmenterClient(address, retries=0) as client:
        with pytest.raises(PermissionDenied):
            client.predict_raster(uri.format(root=raster_root), model="tiny", output_uri=str(raster_root / "o.tif"))


def test_symlink_out_of_the_root_is_denied(segmenter, raster_root, tmp_path):
    address, _ = segmenter
    outside = tmp_path / "outside.tif"
    _write_geotiff(outside, make_scene(64, 64, seed=1).image)
    (raster_root / "link.tif").symlink_to(outside)
    with SegmenterClient(address, retries=0) as client:
        with pytest.raises(PermissionDenied):
            client.predict_raster(str(raster_root / "link.tif"), model="tiny", output_uri=str(raster_root / "o.tif"))


def test_missing_raster_inside_the_root_is_not_found(segmenter, raster_root):
    address, _ = segmenter
    with SegmenterClient(address, retries=0) as client:
        with pytest.raises(NotFound):
            client.predict_raster(str(raster_root / "absent.tif"), model="tiny", output_uri=str(raster_root / "o.tif"))


def test_server_stays_healthy_after_a_burst_of_bad_requests(segmenter):
    address, _ = segmenter
    rng = np.random.default_rng(0)
    channel, stub = _stub(address)
    with channel:
        for i in range(60):
            kwargs, _ = list(CASES.values())[i % len(CASES)]
            request = _request(**kwargs)
            if i % 3 == 0:
                request.image.data = rng.bytes(int(rng.integers(0, 5000)))
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(request, timeout=30)
            assert info.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    with SegmenterClient(address) as client:
        assert client.predict(make_scene(64, 64, seed=2).image, model="tiny").labels.shape == (64, 64)


def _write_geotiff(path, image, crs="EPSG:32633", transform=None):
    transform = transform or from_origin(400000.0, 5000000.0, 0.3, 0.3)
    with rasterio.open(path, "w", driver="GTiff", height=image.shape[0], width=image.shape[1],
                       count=image.shape[2], dtype=image.dtype.name, crs=crs, transform=transform) as ds:
        ds.write(np.moveaxis(image, -1, 0))
    return transform


def test_raster_round_trip_keeps_crs_and_transform_and_matches_predict(segmenter, raster_root):
    address, _ = segmenter
    scene = make_scene(300, 260, seed=4)
    src, out = raster_root / "scene.tif", raster_root / "labels.tif"
    transform = _write_geotiff(src, scene.image)
    clicks = [Click(100, 100, 3)]
    progress = []
    with SegmenterClient(address) as client:
        result = client.predict_raster(str(src), model="tiny", clicks=clicks, output_uri=str(out),
                                       on_progress=lambda done, total: progress.append((done, total)))
        direct = client.predict(scene.image, model="tiny", clicks=clicks).labels
        streamed = client.predict_raster(str(src), model="tiny", clicks=clicks).labels
        tiled = client.predict_raster(scene.image, model="tiny", clicks=clicks, tile_px=128).labels
    assert result.output_uri == str(out)
    with rasterio.open(out) as ds:
        assert ds.crs.to_string() == "EPSG:32633" and ds.transform == transform
        labels = ds.read(1)
    np.testing.assert_array_equal(labels, direct)
    np.testing.assert_array_equal(streamed, direct)
    np.testing.assert_array_equal(tiled, direct)
    assert progress and progress[-1][0] == progress[-1][1] > 1


def test_map_clicks_land_on_the_same_pixel_as_pixel_clicks(segmenter, raster_root):
    address, _ = segmenter
    scene = make_scene(128, 128, seed=5)
    src = raster_root / "geo.tif"
    transform = _write_geotiff(src, scene.image)
    x, y = transform @ (40 + 0.5, 70 + 0.5)  # centre of pixel (row 70, col 40)
    with SegmenterClient(address) as client:
        by_pixel = client.predict_raster(str(src), model="tiny", clicks=[Click(70, 40, 5)]).labels
        by_map = client.predict_raster(str(src), model="tiny", clicks=[MapClick(x, y, 5, "EPSG:32633")]).labels
        lon_lat = warp_points("EPSG:32633", "EPSG:4326", [x], [y])
        by_other_crs = client.predict_raster(
            str(src), model="tiny", clicks=[MapClick(lon_lat[0][0], lon_lat[1][0], 5, "EPSG:4326")]).labels
    np.testing.assert_array_equal(by_map, by_pixel)
    np.testing.assert_array_equal(by_other_crs, by_pixel)


def test_list_and_get_models_expose_the_provider(segmenter):
    address, _ = segmenter
    with SegmenterClient(address) as client:
        models = client.list_models()
        model = client.get_model("tiny")
    assert [(m.name, m.version) for m in models] == [("tiny", "1")]
    assert model.ready and model.provider == "CPUExecutionProvider"
    assert [c.name for c in model.classes][:2] and model.click_radius_px == 5.0
    assert model.input_dtype == "uint8" and len(model.bands) == 3


def test_deadlines_are_honoured(segmenter):
    address, _ = segmenter
    with SegmenterClient(address, retries=0) as client:
        with pytest.raises(DeadlineExceeded):
            client.predict(make_scene(1024, 1024, seed=6).image, model="tiny", timeout=0.05)
        assert client.predict(make_scene(64, 64, seed=6).image, model="tiny").labels.shape == (64, 64)


def test_metrics_exposition_passes_promtool(tiny_repo, raster_root, free_port):
    from dial_services.segmenter.config import SegmenterConfig
    from dial_services.segmenter.main import start

    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing; .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    running = start(SegmenterConfig(host="127.0.0.1", port=0, metrics_port=free_port, model_repo=tiny_repo,
                                    raster_roots=(raster_root,)))
    try:
        with SegmenterClient(f"127.0.0.1:{running.port}", retries=0) as client:
            client.predict(make_scene(64, 64, seed=7).image, model="tiny")
            with pytest.raises(InvalidArgument):
                client.predict(np.zeros((8, 8, 4), np.uint8), model="tiny")
        text = urllib.request.urlopen(f"http://127.0.0.1:{free_port}/metrics", timeout=10).read()
    finally:
        running.stop(0)
    body = text.decode()
    for name in ("dial_grpc_requests_total", "dial_grpc_request_duration_seconds_bucket",
                 "dial_inference_seconds_bucket", "dial_inference_batch_size_bucket",
                 "dial_tiles_processed_total", "dial_models_loaded"):
        assert name in body, name
    assert 'code="INVALID_ARGUMENT"' in body and 'provider="CPUExecutionProvider"' in body
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()


def test_corrupt_model_stops_start_up_with_a_clear_message(tiny_repo, tmp_path):
    from dial.model.manifest import ManifestError
    from dial_services.segmenter.config import SegmenterConfig
    from dial_services.segmenter.main import start

    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo)
    (repo / "tiny" / "1" / "model.onnx").unlink()
    weights = repo / "tiny" / "1" / "weights.pt"
    weights.write_bytes(b"not a checkpoint")
    with pytest.raises(ManifestError, match="checksum"):
        start(SegmenterConfig(host="127.0.0.1", port=0, model_repo=repo))


def test_reflection_lists_the_services(segmenter):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    address, _ = segmenter
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for s in next(replies).list_services_response.service}
    assert {"dial.v1.Segmenter", "grpc.health.v1.Health"} <= names


def test_sigterm_drains_in_flight_calls(tiny_repo, raster_root, free_port):
    """A call in flight when SIGTERM arrives still completes, and the server exits cleanly."""
    import signal
    import threading

    from tests.support.ports import free_port as another_free_port

    metrics_port = another_free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dial_services.cli", "serve", "segmenter", "--host", "127.0.0.1",
         "--port", str(free_port), "--metrics-port", str(metrics_port), "--model-repo", str(tiny_repo),
         "--grace-seconds", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    address = f"127.0.0.1:{free_port}"
    try:
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=120)
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 120
            while health.Check(health_pb2.HealthCheckRequest(), timeout=5).status != 1:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        result = {}
        image = make_scene(1024, 1024, seed=8).image

        def slow_call():
            with SegmenterClient(address, retries=0, timeout=120) as client:
                result["labels"] = client.predict(image, model="tiny").labels

        caller = threading.Thread(target=slow_call)
        caller.start()
        in_flight = 'dial_grpc_requests_in_flight{service="segmenter"} 1.0'
        deadline = time.monotonic() + 60
        while in_flight not in urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode():
            assert time.monotonic() < deadline and caller.is_alive()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        caller.join(timeout=150)
        assert result["labels"].shape == (1024, 1024)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_calls_while_not_serving_are_unavailable_and_health_still_answers(segmenter):
    """Loading models or draining: UNAVAILABLE is the code clients retry, never NOT_FOUND for a loading model."""
    from dial_client.errors import Unavailable

    address, running = segmenter
    image = make_scene(32, 32, seed=2).image
    running.set_serving(False)
    try:
        with SegmenterClient(address, retries=0) as client:
            with pytest.raises(Unavailable, match="starting or shutting down"):
                client.predict(image, model="tiny")
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        running.set_serving(True)
    with SegmenterClient(address, retries=0) as client:
        assert client.predict(image, model="tiny").labels.shape == (32, 32)
