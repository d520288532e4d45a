"""Hostile Predict requests: the segmenter answers each with the right status and stays healthy.

Random bytes in image fields, extreme and inconsistent shapes, unknown enum
values, NaN and infinite map coordinates, click lists past the limit and
models that do not exist must all end in OK or a client-error status, never
INTERNAL or UNKNOWN, and never a dead or unhealthy server.
"""
from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dial_client._proto.dial.v1 import common_pb2, segmenter_pb2, segmenter_pb2_grpc

CLIENT_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}
MAX_CLICKS = 64
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fuzz_target(tiny_repo, tiny_manifest, tmp_path_factory):
    """A segmenter with a small click limit, and a channel to it."""
    from dial_services.common.config import SegmenterConfig
    from dial_services.segmenter.main import start

    roots = (tmp_path_factory.mktemp("fuzz-rasters"),)
    config = SegmenterConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, raster_roots=roots,
                             max_queue_delay_ms=1.0, max_clicks=MAX_CLICKS, max_image_px=256 * 256)
    running = start(config)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    yield segmenter_pb2_grpc.SegmenterStub(channel), health_pb2_grpc.HealthStub(channel), tiny_manifest, channel
    channel.close()
    running.stop(0)


SIDES = st.one_of(st.sampled_from([0, 1, 2, 31, 64, 257, 65535, 2**31, 2**32 - 1]), st.integers(0, 96))
DTYPES = st.sampled_from([common_pb2.DATA_TYPE_UNSPECIFIED, common_pb2.DATA_TYPE_UINT8, common_pb2.DATA_TYPE_UINT16,
                          3, 17, 2**31 - 1])
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
PIXELS = st.one_of(st.integers(0, 60), SIDES)


def mostly(usual, unusual: st.SearchStrategy) -> st.SearchStrategy:
    """``usual`` three times in four, so hostile values elsewhere still reach deep code."""
    return st.tuples(st.integers(0, 3), unusual).map(lambda pair: pair[1] if pair[0] == 3 else usual)


@st.composite
def images(draw, manifest) -> common_pb2.Image:
    if draw(st.integers(0, 2)) != 2:
        # Well-formed for the model, so most requests reach click handling and inference.
        height, width, bands = draw(st.integers(1, 48)), draw(st.integers(1, 48)), manifest.n_bands
        dtype = {"uint8": common_pb2.DATA_TYPE_UINT8, "uint16": common_pb2.DATA_TYPE_UINT16}[manifest.input_dtype]
        size = height * width * bands * (2 if dtype == common_pb2.DATA_TYPE_UINT16 else 1)
        data = draw(st.binary(min_size=size, max_size=size))
    else:
        height, width = draw(SIDES), draw(SIDES)
        bands = draw(st.sampled_from([0, 1, 3, 4, 9, 2**32 - 1]))
        dtype = draw(DTYPES)
        data = draw(st.binary(max_size=512))
    image = common_pb2.Image(data=data, dtype=dtype, height=height, width=width, bands=bands)
    geo = draw(st.sampled_from(["none", "valid", "hostile"]))
    if geo == "valid":
        image.geo.crs = "EPSG:32631"
        image.geo.transform.extend([0.5, 0.0, 500000.0, 0.0, -0.5, 5000000.0])
    elif geo == "hostile":
        image.geo.crs = draw(st.sampled_from(["", "EPSG:32631", "EPSG:4326", "EPSG:999999", "not a crs"]))
        image.geo.transform.extend(draw(st.lists(FLOATS, max_size=7)))
    return image


@st.composite
def clicks(draw) -> list[common_pb2.Click]:
    count = draw(st.one_of(st.integers(0, 6), st.sampled_from([MAX_CLICKS, MAX_CLICKS + 1, 5000])))
    kind = draw(st.sampled_from(["pixel", "map", "none", "mixed"]))
    out = []
    for i in range(count):
        # Past the first few, clicks repeat cheaply: huge lists test the limit, not hypothesis.
        drawn = i < 8
        click = common_pb2.Click(class_id=draw(st.sampled_from([0, 1, 5, 6, 255, 2**32 - 1])) if drawn else 1)
        chosen = kind if kind != "mixed" else ("pixel", "map", "none")[i % 3]
        if chosen == "pixel":
            click.pixel.row, click.pixel.col = (draw(PIXELS), draw(PIXELS)) if drawn else (i % 7, i % 5)
        elif chosen == "map":
            if drawn and draw(st.booleans()):
                # Inside the "valid" georeference of images(): 0.5 m pixels from (500000, 5000000).
                x, y = 500000.0 + draw(st.floats(-5, 30)), 5000000.0 - draw(st.floats(-5, 30))
            else:
                x, y = (draw(FLOATS), draw(FLOATS)) if drawn else (float(i), math.nan)
            click.map.x, click.map.y = x, y
            click.map.crs = draw(st.sampled_from(["", "", "EPSG:32631", "EPSG:4326", "garbage"])) if drawn else ""
        out.append(click)
    return out


def assert_healthy(health) -> None:
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_hostile_predict_requests_get_client_errors(fuzz_target):
    stub, health, manifest, _ = fuzz_target

    @FUZZ
    @given(image=images(manifest), click_list=clicks(),
           model=mostly("tiny", st.sampled_from(["", "missing", "../etc", "tiny\x00"])),
           version=mostly("", st.sampled_from(["1", "999", "latest", "-1"])),
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
