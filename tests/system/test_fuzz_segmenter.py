"""Hostile Predict requests: the segmenter answers each with the right status and stays healthy.

Random bytes in image fields, extreme and inconsistent shapes, unknown enum
values, NaN and infinite map coordinates, click lists past the limit and
models that do not exist must all end in OK or a client-error status, never
INTERNAL or UNKNOWN, and never a dead or unhealthy server.
"""
from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2_grpc
from hypothesis import event, given
from hypothesis import strategies as st

from dial_client.wire import common_pb2, segmenter_pb2, segmenter_pb2_grpc
from tests.support.hostile_requests import (
    CLIENT_ERRORS, FUZZ, MODEL_NAMES, MODEL_VERSIONS, assert_healthy, clicks, images, mostly, tile_streams,
)

MAX_CLICKS = 64


@pytest.fixture(scope="module")
def fuzz_target(tiny_repo, tiny_manifest, tmp_path_factory):
    """A segmenter with a small click limit, and a channel to it."""
    from dial_services.segmenter.config import SegmenterConfig
    from dial_services.segmenter.main import start

    roots = (tmp_path_factory.mktemp("fuzz-rasters"),)
    config = SegmenterConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, raster_roots=roots,
                             max_queue_delay_ms=1.0, max_clicks=MAX_CLICKS, max_image_px=256 * 256)
    running = start(config)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    yield segmenter_pb2_grpc.SegmenterStub(channel), health_pb2_grpc.HealthStub(channel), tiny_manifest, channel
    channel.close()
    running.stop(0)


def test_hostile_predict_requests_get_client_errors(fuzz_target):
    stub, health, manifest, _ = fuzz_target

    @FUZZ
    @given(image=images(manifest), click_list=clicks(MAX_CLICKS),
           model=mostly("tiny", MODEL_NAMES), version=mostly("", MODEL_VERSIONS),
           probabilities=st.booleans())
    def check(image, click_list, model, version, probabilities):
        request = segmenter_pb2.PredictRequest(model=common_pb2.ModelRef(name=model, version=version), image=image,
                                               clicks=click_list, return_probabilities=probabilities)
        try:
            response = stub.Predict(request, timeout=60)
        except grpc.RpcError as error:
            event(error.code().name)
            assert error.code() in CLIENT_ERRORS, (error.code(), error.details())
            assert "Traceback" not in (error.details() or "")
        else:
            event("OK")
            assert (response.class_map.height, response.class_map.width) == (image.height, image.width)
            assert len(response.class_map.data) == image.height * image.width
            labels = np.frombuffer(response.class_map.data, dtype=np.uint8)
            assert labels.max(initial=0) < manifest.n_classes
        assert_healthy(health)

    check()


def test_hostile_tile_streams_get_client_errors(fuzz_target):
    """Tile-stream headers with garbage CRSs, NaN, infinite or singular transforms and odd shapes, then windows
    that repeat, overlap, leave gaps or fall outside: a client error or a complete class map, never INTERNAL."""
    stub, health, manifest, _ = fuzz_target
    outcomes = set()

    @FUZZ
    @given(requests=tile_streams(manifest))
    def check(requests):
        header = requests[0].header.tiles
        try:
            responses = list(stub.PredictRaster(iter(requests), timeout=60))
        except grpc.RpcError as error:
            event(error.code().name)
            outcomes.add(error.code().name)
            assert error.code() in CLIENT_ERRORS, (error.code(), error.details())
            assert "Traceback" not in (error.details() or "")
        else:
            event("OK")
            outcomes.add("OK")
            # Only tiles that cover the raster exactly, with no overlap, may succeed.
            areas = sum(r.tile.window.height * r.tile.window.width for r in requests[1:])
            assert areas == header.height * header.width
            result = responses[-1].result
            assert (result.height, result.width) == (header.height, header.width)
        assert_healthy(health)

    check()
    # The streams must reach both the refusals and a served raster, or they test nothing.
    assert {"OK", "INVALID_ARGUMENT"} <= outcomes, outcomes


def test_the_click_limit_is_enforced_with_a_field_violation(fuzz_target):
    stub, health, manifest, _ = fuzz_target
    image = common_pb2.Image(data=bytes(8 * 8 * manifest.n_bands), dtype=common_pb2.DATA_TYPE_UINT8, height=8,
                             width=8, bands=manifest.n_bands)
    click = common_pb2.Click(pixel=common_pb2.PixelPoint(row=1, col=1), class_id=0)
    request = segmenter_pb2.PredictRequest(model=common_pb2.ModelRef(name="tiny"), image=image,
                                           clicks=[click] * (MAX_CLICKS + 1))
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "clicks" in error.value.details()
    request.ClearField("clicks")
    request.clicks.extend([click] * MAX_CLICKS)
    assert stub.Predict(request, timeout=30).class_map.height == 8
    assert_healthy(health)


@FUZZ
@given(payload=st.binary(max_size=256))
def test_garbage_on_the_wire_does_not_hurt_the_server(fuzz_target, payload):
    """Bytes that are not a PredictRequest: gRPC itself refuses what cannot be parsed."""
    _, health, _, channel = fuzz_target
    predict = channel.unary_unary("/dial.v1.Segmenter/Predict")
    try:
        predict(payload, timeout=30)
    except grpc.RpcError as error:
        # INTERNAL is gRPC's own answer to an unparsable message, before any handler runs.
        assert error.code() in CLIENT_ERRORS | {grpc.StatusCode.INTERNAL}, (error.code(), error.details())
    assert_healthy(health)
