"""What every service exposes to Prometheus: names promtool accepts, process metrics, latency by code and call
type, inference latency and queue wait per model and version; and reflection under v1 as well as v1alpha."""
from __future__ import annotations

import shutil
import subprocess
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from tests.support.synthetic import make_scene
from dial_client import InvalidArgument, SegmenterClient
from dial_client.wire import common_pb2, segmenter_pb2, segmenter_pb2_grpc
from dial_services.common.metrics import ServiceMetrics
from dial_services.segmenter.batching import DynamicBatcher


def _promtool() -> str:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing; .ci/run installs Debian's prometheus package"
    return promtool


@pytest.fixture()
def exposition(tiny_repo, raster_root, free_port) -> str:
    """The segmenter's /metrics after a good unary call, a refused one and a bidi stream."""
    from dial_services.segmenter.config import SegmenterConfig
    from dial_services.segmenter.main import start

    running = start(SegmenterConfig(host="127.0.0.1", port=0, metrics_port=free_port, model_repo=tiny_repo,
                                    raster_roots=(raster_root,), max_queue_delay_ms=1.0))
    try:
        with SegmenterClient(f"127.0.0.1:{running.port}", retries=0) as client:
            image = make_scene(64, 64, seed=7).image
            client.predict(image, model="tiny")
            with pytest.raises(InvalidArgument):
                client.predict(np.zeros((8, 8, 4), np.uint8), model="tiny")
        _write_geotiff(raster_root / "scene.tif", image)
        _predict_raster(f"127.0.0.1:{running.port}", raster_root / "scene.tif")
        return urllib.request.urlopen(f"http://127.0.0.1:{free_port}/metrics", timeout=10).read().decode()
    finally:
        running.stop(0)


def _write_geotiff(path, image) -> None:
    with rasterio.open(path, "w", driver="GTiff", height=image.shape[0], width=image.shape[1], count=image.shape[2],
                       dtype=image.dtype.name, crs="EPSG:32633",
                       transform=from_origin(400000.0, 5000000.0, 0.3, 0.3)) as ds:
        ds.write(np.moveaxis(image, -1, 0))


def _predict_raster(address: str, path) -> None:
    """One PredictRaster stream over the raw stub: a header naming a GeoTIFF, the class map streamed back."""
    header = segmenter_pb2.PredictRasterHeader(model=common_pb2.ModelRef(name="tiny"),
                                               raster=common_pb2.RasterReference(uri=str(path)), stream_tiles=True)
    with grpc.insecure_channel(address) as channel:
        replies = list(segmenter_pb2_grpc.SegmenterStub(channel).PredictRaster(
            iter([segmenter_pb2.PredictRasterRequest(header=header)]), timeout=60))
    assert replies


def _samples(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " ")]


def test_the_exposition_passes_promtool_and_has_process_metrics(exposition):
    lint = subprocess.run([_promtool(), "check", "metrics"], input=exposition.encode(), capture_output=True)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total"):
        (sample,) = _samples(exposition, name)
        assert float(sample.split()[-1]) > 0, sample


def test_latency_is_labelled_by_status_code_and_call_type(exposition):
    counts = {line.split("{", 1)[1].split("}", 1)[0]: float(line.split()[-1])
              for line in _samples(exposition, "dial_grpc_request_duration_seconds_count")}
    assert counts['code="OK",grpc_type="unary",method="Predict",service="segmenter"'] == 1
    assert counts['code="INVALID_ARGUMENT",grpc_type="unary",method="Predict",service="segmenter"'] == 1
    assert counts['code="OK",grpc_type="bidi_stream",method="PredictRaster",service="segmenter"'] == 1


def test_inference_latency_and_queue_wait_are_per_model_and_version(exposition):
    for name in ("dial_inference_request_duration_seconds_count", "dial_inference_queue_duration_seconds_count"):
        samples = _samples(exposition, name)
        assert samples and all('model="tiny"' in s and 'version="' in s for s in samples), name
        # One Predict and the raster's tiles (64 px in 32 px tiles, batched or not): more than one call.
        assert sum(float(s.split()[-1]) for s in samples) >= 2, samples


def test_the_batcher_reports_how_long_a_call_waited_for_its_batch():
    release = threading.Event()
    reports = []

    def run(batch):
        release.wait(5)
        return batch

    batcher = DynamicBatcher(run, max_batch_size=2, max_queue_delay_s=0.001, max_queue_size=4,
                             on_request=lambda queued, total: reports.append((queued, total)))
    try:
        first = threading.Thread(target=batcher.submit, args=(np.zeros((1, 1, 2, 2)),))
        first.start()
        time.sleep(0.05)  # the first call now holds the runner
        second = threading.Thread(target=batcher.submit, args=(np.zeros((1, 1, 2, 2)),))
        second.start()
        time.sleep(0.2)
        release.set()
        first.join(5), second.join(5)
    finally:
        batcher.close()
    assert len(reports) == 2
    (_, first_total), (second_queued, second_total) = reports
    assert second_queued >= 0.15  # it waited behind the first call's batch
    assert first_total >= 0.2 and second_total >= second_queued


def test_direct_calls_report_no_queue_wait():
    reports = []
    batcher = DynamicBatcher(lambda batch: batch, max_batch_size=1, max_queue_delay_s=0, max_queue_size=1,
                             on_request=lambda queued, total: reports.append((queued, total)))
    batcher.submit(np.zeros((1, 1, 2, 2)))
    assert len(reports) == 1 and reports[0][0] == 0.0 and reports[0][1] >= 0


def test_each_service_registry_has_its_own_process_collector():
    first, second = ServiceMetrics("segmenter"), ServiceMetrics("adapter")
    for metrics in (first, second):
        assert metrics.registry.get_sample_value("process_resident_memory_bytes") > 0


@pytest.mark.parametrize("package", ["grpc.reflection.v1", "grpc.reflection.v1alpha"])
def test_reflection_answers_under_v1_and_v1alpha(segmenter, package):
    from grpc_reflection.v1alpha import reflection_pb2

    address, _ = segmenter
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(f"/{package}.ServerReflection/ServerReflectionInfo",
                                     request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                     response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        replies = call(iter([reflection_pb2.ServerReflectionRequest(list_services=""),
                             reflection_pb2.ServerReflectionRequest(file_containing_symbol="dial.v1.Segmenter")]),
                       timeout=10)
        listed, described = next(replies), next(replies)
    names = {s.name for s in listed.list_services_response.service}
    assert {"dial.v1.Segmenter", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} <= names
    assert described.file_descriptor_response.file_descriptor_proto
