"""The dial_client package on its own: conversions, errors, retries, and calls to a fake Segmenter."""
from __future__ import annotations

import subprocess
import sys
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

import dial_client
from dial_client import (
    Click,
    DialError,
    FieldViolation,
    GeoReference,
    InvalidArgument,
    MapClick,
    NotFound,
    RetryPolicy,
    SegmenterClient,
    Unavailable,
    click_from_proto,
    error_from_rpc,
)
from dial_client.wire import common_pb2, segmenter_pb2, segmenter_pb2_grpc
from dial_client.wire import (
    class_map_from_proto,
    class_map_to_proto,
    image_from_proto,
    image_to_proto,
    probabilities_from_proto,
    probabilities_to_proto,
)
from dial_client.transport import call_with_retry

FAST_RETRIES = RetryPolicy(max_attempts=3, initial_backoff_seconds=0.01, max_backoff_seconds=0.02)


# --- conversions -------------------------------------------------------------


def test_uint8_image_round_trips_band_interleaved_by_pixel():
    image = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    message = image_to_proto(image)
    assert (message.height, message.width, message.bands) == (2, 3, 4)
    assert message.dtype == common_pb2.DATA_TYPE_UINT8
    assert message.data == image.tobytes()  # (H, W, B) C order is pixel-interleaved
    np.testing.assert_array_equal(image_from_proto(message), image)


def test_uint16_image_travels_little_endian_whatever_the_input_byte_order():
    values = np.array([[[1, 258], [65535, 4096]]], dtype=np.uint16)
    message = image_to_proto(values.astype(">u2"))
    assert message.dtype == common_pb2.DATA_TYPE_UINT16
    assert message.data == values.astype("<u2").tobytes()
    decoded = image_from_proto(message)
    assert decoded.dtype == np.dtype(np.uint16)
    np.testing.assert_array_equal(decoded, values)
    decoded[0, 0, 0] = 7  # writable, not a view of the message bytes


def test_two_dimensional_image_is_one_band():
    message = image_to_proto(np.zeros((5, 6), dtype=np.uint16))
    assert (message.height, message.width, message.bands) == (5, 6, 1)
    assert image_from_proto(message).shape == (5, 6, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint32, bool])
def test_images_other_than_uint8_or_uint16_are_refused(dtype):
    with pytest.raises(TypeError, match="uint8 or uint16"):
        image_to_proto(np.zeros((2, 2, 1), dtype=dtype))


def test_image_with_wrong_byte_count_is_refused():
    message = image_to_proto(np.zeros((4, 4, 3), dtype=np.uint8))
    message.bands = 4
    with pytest.raises(ValueError, match="bytes"):
        image_from_proto(message)


def test_image_keeps_its_georeference():
    geo = GeoReference("EPSG:32631", (0.5, 0, 300000, 0, -0.5, 5000000))
    message = image_to_proto(np.zeros((2, 2), dtype=np.uint8), geo)
    assert GeoReference.from_proto(message.geo) == geo
    assert GeoReference.from_proto(common_pb2.GeoReference()) is None


def test_class_map_round_trips():
    labels = np.random.default_rng(0).integers(0, 6, size=(7, 9)).astype(np.int64)
    decoded = class_map_from_proto(class_map_to_proto(labels))
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, labels)
    with pytest.raises(ValueError, match="0..255"):
        class_map_to_proto(np.full((2, 2), 256))


def test_probabilities_round_trip_within_quantisation_error():
    logits = np.random.default_rng(1).normal(size=(3, 4, 5))
    probabilities = (np.exp(logits) / np.exp(logits).sum(axis=0)).astype(np.float32)
    message = probabilities_to_proto(probabilities)
    assert (message.classes, message.height, message.width) == (3, 4, 5)
    assert message.data[0] == round(float(probabilities[0, 0, 0]) * 255)  # (K, H, W) layout
    decoded = probabilities_from_proto(message)
    assert decoded.dtype == np.float32 and decoded.shape == (3, 4, 5)
    assert np.abs(decoded - probabilities).max() <= 1 / 510 + 1e-6


def test_clicks_convert_to_and_from_proto():
    pixel = Click(row=12, col=34, class_id=2)
    on_map = MapClick(x=300010.5, y=4999990.0, class_id=1, crs="EPSG:32631")
    assert pixel.to_proto().WhichOneof("location") == "pixel"
    assert on_map.to_proto().map.crs == "EPSG:32631"
    assert click_from_proto(pixel.to_proto()) == pixel
    assert click_from_proto(on_map.to_proto()) == on_map
    with pytest.raises(ValueError):
        Click(row=-1, col=0, class_id=0).to_proto()
    with pytest.raises(ValueError):
        MapClick(x=0.0, y=0.0, class_id=0, crs="").to_proto()


# --- error mapping -----------------------------------------------------------


class FakeRpcError(grpc.RpcError, grpc.Call):
    """What a stub raises: an RpcError that is also a Call with code, details and trailers."""

    def __init__(self, code, details="", trailing_metadata=()):
        self._code, self._details, self._trailing = code, details, tuple(trailing_metadata)

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailing

    def initial_metadata(self):
        return ()

    def is_active(self):
        return False

    def time_remaining(self):
        return None

    def cancel(self):
        return False

    def add_callback(self, callback):
        return False


def bad_request_trailer(*violations, message="invalid request"):
    """A grpc-status-details-bin trailer carrying a google.rpc.Status with a BadRequest."""
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            for field, description in violations
        ]
    )
    detail = any_pb2.Any()
    detail.Pack(bad_request)
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message, details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),)


@pytest.mark.parametrize(
    "code, error_type",
    [
        (grpc.StatusCode.INVALID_ARGUMENT, dial_client.InvalidArgument),
        (grpc.StatusCode.NOT_FOUND, dial_client.NotFound),
        (grpc.StatusCode.PERMISSION_DENIED, dial_client.PermissionDenied),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, dial_client.ResourceExhausted),
        (grpc.StatusCode.UNAVAILABLE, dial_client.Unavailable),
        (grpc.StatusCode.UNAUTHENTICATED, dial_client.Unauthenticated),
        (grpc.StatusCode.DEADLINE_EXCEEDED, dial_client.DeadlineExceeded),
        (grpc.StatusCode.FAILED_PRECONDITION, dial_client.FailedPrecondition),
        (grpc.StatusCode.INTERNAL, dial_client.Internal),
    ],
)
def test_status_codes_map_to_typed_errors(code, error_type):
    error = error_from_rpc(FakeRpcError(code, "went wrong"))
    assert type(error) is error_type
    assert isinstance(error, DialError)
    assert (error.code, error.message, error.field_violations) == (code, "went wrong", ())


def test_unmapped_status_code_gives_the_base_error():
    error = error_from_rpc(FakeRpcError(grpc.StatusCode.DATA_LOSS, "lost"))
    assert type(error) is DialError and error.code == grpc.StatusCode.DATA_LOSS


def test_bad_request_field_violations_are_decoded_from_the_trailer():
    trailer = bad_request_trailer(("image.bands", "model expects 3 bands, got 4"), ("clicks[0].class_id", "6 > 5"))
    error = error_from_rpc(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "invalid request", trailer))
    assert isinstance(error, InvalidArgument)
    assert error.field_violations == (
        FieldViolation("image.bands", "model expects 3 bands, got 4"),
        FieldViolation("clicks[0].class_id", "6 > 5"),
    )
    assert "image.bands: model expects 3 bands, got 4" in str(error)


def test_field_violations_are_skipped_without_googleapis_common_protos(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.rpc", None)
    trailer = bad_request_trailer(("image.bands", "wrong"))
    error = error_from_rpc(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "invalid request", trailer))
    assert isinstance(error, InvalidArgument) and error.field_violations == ()


def test_undecodable_status_details_are_ignored():
    trailer = (("grpc-status-details-bin", b"\xff\xff not a status"),)
    error = error_from_rpc(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "bad", trailer))
    assert error.field_violations == ()


def test_status_details_that_contradict_the_call_are_ignored():
    # A rich status must agree with the call's code and message (grpcio-status checks both), so a
    # proxy that rewrote the status cannot leave another error's field violations attached to it.
    trailer = bad_request_trailer(("image.bands", "wrong"))
    error = error_from_rpc(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "invalid request", trailer))
    assert isinstance(error, Unavailable) and error.field_violations == ()
    error = error_from_rpc(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "another message", trailer))
    assert isinstance(error, InvalidArgument) and error.field_violations == ()


# --- retry policy ------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def always_unavailable(timeouts):
    def attempt(timeout):
        timeouts.append(timeout)
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down")

    return attempt


def test_backoff_grows_exponentially_up_to_its_cap():
    clock, timeouts = FakeClock(), []
    policy = RetryPolicy(
        max_attempts=5, initial_backoff_seconds=1.0, backoff_multiplier=2.0, max_backoff_seconds=3.0, jitter=0.0
    )
    with pytest.raises(grpc.RpcError):
        call_with_retry(always_unavailable(timeouts), policy, None, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [1.0, 2.0, 3.0, 3.0]
    assert timeouts == [None] * 5


def test_jitter_spreads_backoff_within_its_bounds():
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=30, initial_backoff_seconds=1.0, backoff_multiplier=1.0, jitter=0.5)
    with pytest.raises(grpc.RpcError):
        call_with_retry(always_unavailable([]), policy, None, sleep=clock.sleep, clock=clock)
    assert all(0.5 <= s <= 1.5 for s in clock.sleeps)
    assert len(set(clock.sleeps)) > 1


def test_timeout_bounds_the_whole_call_including_backoff():
    clock, timeouts = FakeClock(), []
    policy = RetryPolicy(max_attempts=10, initial_backoff_seconds=1.0, backoff_multiplier=2.0, jitter=0.0)
    with pytest.raises(grpc.RpcError):
        call_with_retry(always_unavailable(timeouts), policy, 2.5, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [1.0]  # a 2 s backoff would pass the 2.5 s deadline
    assert timeouts == [2.5, 1.5]


# --- calls to an in-process fake Segmenter ----------------------------------


class FakeSegmenter(segmenter_pb2_grpc.SegmenterServicer):
    """Labels are band 0 modulo 3 (Predict) or 5 (PredictRaster); fails the first `failures` calls."""

    def __init__(self, failures=0, failure_code=grpc.StatusCode.UNAVAILABLE, trailer=(), fail_after_progress=0):
        self.failures, self.failure_code, self.trailer = failures, failure_code, trailer
        self.fail_after_progress = fail_after_progress
        self.calls = 0
        self.metadata = {}
        self.headers = []
        self.list_requests = []

    def _maybe_fail(self, context):
        self.calls += 1
        if self.calls <= self.failures:
            context.set_trailing_metadata(self.trailer)
            context.abort(self.failure_code, "injected failure")

    def Predict(self, request, context):
        self.metadata = dict(context.invocation_metadata())
        self._maybe_fail(context)
        if request.model.name == "slow":
            time.sleep(0.5)
        labels = image_from_proto(request.image)[:, :, 0] % 3
        response = segmenter_pb2.PredictResponse(
            class_map=class_map_to_proto(labels),
            model=common_pb2.ModelRef(name=request.model.name, version=request.model.version or "7"),
            execution_provider="CPUExecutionProvider",
        )
        if request.return_probabilities:
            one_hot = (np.arange(3)[:, None, None] == labels[None]).astype(np.float32)
            response.probabilities.CopyFrom(probabilities_to_proto(one_hot))
        return response

    def PredictRaster(self, request_iterator, context):
        header = next(request_iterator).header
        self.headers.append(header)
        if self.calls < self.fail_after_progress:
            # A server lost mid-job: one tile and its progress went out, then the stream broke.
            self.calls += 1
            first = next(request_iterator).tile
            yield segmenter_pb2.PredictRasterResponse(class_map_tile=segmenter_pb2.ClassMapTile(
                window=first.window, class_map=class_map_to_proto(image_from_proto(first.image)[:, :, 0] * 0 + 4)))
            yield segmenter_pb2.PredictRasterResponse(progress=segmenter_pb2.Progress(tiles_done=1, tiles_total=4))
            context.abort(grpc.StatusCode.UNAVAILABLE, "lost mid-stream")
        self._maybe_fail(context)
        if header.WhichOneof("source") == "raster":
            yield segmenter_pb2.PredictRasterResponse(
                result=segmenter_pb2.RasterResult(output_uri=header.output_uri, height=600, width=800)
            )
            return
        tiles = [request.tile for request in request_iterator]
        for done, tile in enumerate(tiles, start=1):
            labels = image_from_proto(tile.image)[:, :, 0] % 5
            yield segmenter_pb2.PredictRasterResponse(
                class_map_tile=segmenter_pb2.ClassMapTile(window=tile.window, class_map=class_map_to_proto(labels))
            )
            yield segmenter_pb2.PredictRasterResponse(
                progress=segmenter_pb2.Progress(tiles_done=done, tiles_total=len(tiles))
            )
        yield segmenter_pb2.PredictRasterResponse(
            result=segmenter_pb2.RasterResult(
                geo=header.tiles.geo, height=header.tiles.height, width=header.tiles.width
            )
        )

    def ListModels(self, request, context):
        self.list_requests.append(request)
        names = [f"model-{i}" for i in range(5)]
        start = int(request.page_token or 0)
        end = start + request.page_size
        return segmenter_pb2.ListModelsResponse(
            models=[common_pb2.Model(name=n, version="1") for n in names[start:end]],
            next_page_token=str(end) if end < len(names) else "",
        )

    def GetModel(self, request, context):
        if request.model.name != "linknet":
            context.abort(grpc.StatusCode.NOT_FOUND, f"no model {request.model.name!r}")
        return common_pb2.Model(name="linknet", version=request.model.version or "3", tile_px=512)


@pytest.fixture
def serve():
    servers = []

    def start(servicer):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        segmenter_pb2_grpc.add_SegmenterServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(None)


def test_predict_returns_labels_probabilities_and_the_answering_model(serve):
    target = serve(FakeSegmenter())
    image = np.random.default_rng(2).integers(0, 255, size=(6, 8, 3), dtype=np.uint8)
    with SegmenterClient(target) as client:
        result = client.predict(image, [Click(1, 2, 0)], model="linknet", return_probabilities=True)
    np.testing.assert_array_equal(result.labels, image[:, :, 0] % 3)
    assert result.probabilities.shape == (3, 6, 8)
    np.testing.assert_array_equal(result.probabilities.argmax(axis=0), result.labels)
    assert (result.model, result.version, result.provider) == ("linknet", "7", "CPUExecutionProvider")


def test_token_and_caller_travel_as_metadata(serve):
    servicer = FakeSegmenter()
    with SegmenterClient(serve(servicer), token="s3cret", caller="alice") as client:
        result = client.predict(np.zeros((2, 2), dtype=np.uint8), model="linknet")
    assert result.probabilities is None
    assert servicer.metadata["authorization"] == "Bearer s3cret"
    assert servicer.metadata["caller"] == "alice"


def test_unavailable_is_retried_until_the_call_succeeds(serve):
    servicer = FakeSegmenter(failures=2)
    with SegmenterClient(serve(servicer), retries=FAST_RETRIES) as client:
        result = client.predict(np.full((2, 2), 4, dtype=np.uint8), model="linknet")
    assert servicer.calls == 3
    np.testing.assert_array_equal(result.labels, np.full((2, 2), 1))


def test_retries_stop_after_the_configured_attempts(serve):
    servicer = FakeSegmenter(failures=2)
    with SegmenterClient(serve(servicer), retries=RetryPolicy(max_attempts=2, initial_backoff_seconds=0.01)) as client:
        with pytest.raises(Unavailable):
            client.predict(np.zeros((2, 2), dtype=np.uint8), model="linknet")
    assert servicer.calls == 2


def test_invalid_argument_is_not_retried_and_names_the_fields(serve):
    trailer = bad_request_trailer(("image.bands", "model expects 3 bands, got 1"), message="injected failure")
    servicer = FakeSegmenter(failures=5, failure_code=grpc.StatusCode.INVALID_ARGUMENT, trailer=trailer)
    with SegmenterClient(serve(servicer), retries=FAST_RETRIES) as client:
        with pytest.raises(InvalidArgument) as raised:
            client.predict(np.zeros((2, 2), dtype=np.uint8), model="linknet")
    assert servicer.calls == 1
    assert raised.value.message == "injected failure"
    assert raised.value.field_violations == (FieldViolation("image.bands", "model expects 3 bands, got 1"),)


def test_timeout_raises_deadline_exceeded(serve):
    with SegmenterClient(serve(FakeSegmenter()), timeout=0.1) as client:
        with pytest.raises(dial_client.DeadlineExceeded):
            client.predict(np.zeros((2, 2), dtype=np.uint8), model="slow")


def test_predict_raster_streams_an_array_as_tiles_and_assembles_the_class_map(serve):
    servicer = FakeSegmenter()
    raster = np.random.default_rng(3).integers(0, 4000, size=(70, 50, 2), dtype=np.uint16)
    geo = GeoReference("EPSG:2154", (10.0, 0.0, 600000.0, 0.0, -10.0, 6800000.0))
    progress = []
    with SegmenterClient(serve(servicer)) as client:
        prediction = client.predict_raster(
            raster, model="linknet", clicks=[Click(3, 4, 1)], geo=geo, tile_px=32,
            on_progress=lambda done, total: progress.append((done, total)),
        )
    header = servicer.headers[0]
    assert header.stream_tiles and header.tiles.height == 70 and header.tiles.bands == 2
    assert header.tiles.dtype == common_pb2.DATA_TYPE_UINT16
    assert progress == [(i, 6) for i in range(1, 7)]  # 3 x 2 tiles of 32 px
    assert prediction.output_uri == "" and prediction.geo == geo
    assert (prediction.height, prediction.width) == (70, 50)
    np.testing.assert_array_equal(prediction.labels, raster[:, :, 0] % 5)


def test_predict_raster_by_reference_returns_the_written_uri(serve):
    servicer = FakeSegmenter()
    with SegmenterClient(serve(servicer)) as client:
        prediction = client.predict_raster("/data/scene.tif", model="linknet", output_uri="/data/out/scene_labels.tif")
    assert servicer.headers[0].raster.uri == "/data/scene.tif"
    assert prediction.output_uri == "/data/out/scene_labels.tif" and prediction.labels is None
    assert (prediction.height, prediction.width) == (600, 800)


def test_predict_raster_retries_a_stream_that_failed_before_any_response(serve):
    servicer = FakeSegmenter(failures=1)
    raster = np.arange(40 * 30, dtype=np.uint16).reshape(40, 30)
    with SegmenterClient(serve(servicer), retries=FAST_RETRIES) as client:
        prediction = client.predict_raster(raster, model="linknet", tile_px=16)
    assert servicer.calls == 2 and len(servicer.headers) == 2
    np.testing.assert_array_equal(prediction.labels, raster % 5)


def test_predict_raster_lost_mid_stream_is_retried_whole(serve):
    """Tiles of a broken attempt never reach the caller: the retry's result is the only one."""
    servicer = FakeSegmenter(fail_after_progress=1)
    image = (np.arange(20 * 12, dtype=np.uint16).reshape(20, 12) % 251).astype(np.uint8)
    progress = []
    with SegmenterClient(serve(servicer), retries=FAST_RETRIES) as client:
        result = client.predict_raster(image, model="linknet", tile_px=10,
                                       on_progress=lambda done, total: progress.append(done))
    assert servicer.calls == 2
    np.testing.assert_array_equal(result.labels, image % 5)
    assert progress[0] == 1 and progress[1:] == [1, 2, 3, 4]  # the retry starts again from the first tile


def test_predict_raster_gives_up_when_every_attempt_breaks(serve):
    servicer = FakeSegmenter(fail_after_progress=10)
    with SegmenterClient(serve(servicer), retries=FAST_RETRIES) as client:
        with pytest.raises(Unavailable):
            client.predict_raster(np.zeros((8, 8), dtype=np.uint8), model="linknet")
    assert servicer.calls == FAST_RETRIES.max_attempts


def test_list_models_follows_page_tokens(serve):
    servicer = FakeSegmenter()
    with SegmenterClient(serve(servicer)) as client:
        models = client.list_models(page_size=2)
    assert [m.name for m in models] == [f"model-{i}" for i in range(5)]
    assert [r.page_token for r in servicer.list_requests] == ["", "2", "4"]


def test_get_model_resolves_the_latest_version_and_maps_not_found(serve):
    with SegmenterClient(serve(FakeSegmenter())) as client:
        assert client.get_model("linknet").version == "3"
        assert client.get_model("linknet", "1").version == "1"
        with pytest.raises(NotFound, match="no model 'other'"):
            client.get_model("other")


def test_model_info_reads_every_field_of_the_message():
    message = common_pb2.Model(
        name="landcover", version="2", architecture="LinkNet", encoder="resnet18",
        classes=[common_pb2.ClassInfo(id=0, name="building", colour="#ff0000"),
                 common_pb2.ClassInfo(id=1, name="water", colour="#0000ff")],
        bands=[common_pb2.BandInfo(name="red", mean=10.0, std=2.0)], input_dtype=common_pb2.DATA_TYPE_UINT16,
        click_encoding=common_pb2.ClickEncoding(kind="distance_cone", radius_px=25.0), tile_px=512, overlap_px=64,
        execution_provider="CUDAExecutionProvider", ready=True,
        training=common_pb2.TrainingSummary(command="dial train", data="miniFrance", validation_metrics={"miou": 0.5}))
    model = dial_client.ModelInfo.from_proto(message)
    assert (model.name, model.version, model.architecture, model.encoder) == ("landcover", "2", "LinkNet", "resnet18")
    assert model.classes == (dial_client.ClassInfo(0, "building", "#ff0000"), dial_client.ClassInfo(1, "water", "#0000ff"))
    assert model.class_names == ("building", "water") and model.band_names == ("red",)
    assert model.bands == (dial_client.BandInfo("red", 10.0, 2.0),) and model.input_dtype == "uint16"
    assert (model.click_encoding, model.click_radius_px, model.tile_px, model.overlap_px) == ("distance_cone", 25.0, 512, 64)
    assert (model.provider, model.ready) == ("CUDAExecutionProvider", True)
    assert (model.training_command, model.training_data, model.validation_metrics) == ("dial train", "miniFrance", {"miou": 0.5})
    assert dial_client.ModelInfo.from_proto(common_pb2.Model(name="x")).input_dtype == ""


def test_an_error_shows_each_violation_once_though_the_message_summarises_them():
    violations = [FieldViolation("image.bands", "must be 1, 3 or 4, got 64"), FieldViolation("clicks[0].row", "< 0")]
    error = InvalidArgument(grpc.StatusCode.INVALID_ARGUMENT,
                            "invalid request: image.bands: must be 1, 3 or 4, got 64; clicks[0].row: < 0", violations)
    assert str(error).splitlines() == ["INVALID_ARGUMENT: invalid request", "  image.bands: must be 1, 3 or 4, got 64",
                                       "  clicks[0].row: < 0"]
    own_words = InvalidArgument(grpc.StatusCode.INVALID_ARGUMENT, "bad image", violations[:1])
    assert str(own_words).splitlines()[0] == "INVALID_ARGUMENT: bad image"


@pytest.mark.parametrize("shape, hinted", [((3, 512, 512), True), ((9, 64, 80), True), ((512, 512, 3), False),
                                           ((64, 64), False), ((32, 512, 512), False), ((8, 8, 9), False)])
def test_only_arrays_that_look_band_first_get_the_moveaxis_hint(shape, hinted):
    from dial_client.errors import hint_image_layout, image_layout_hint

    assert bool(image_layout_hint(shape)) == hinted
    refused = InvalidArgument(grpc.StatusCode.INVALID_ARGUMENT, "invalid request",
                              [FieldViolation("image.bands", "must be 1, 3 or 4")])
    hinted_error = hint_image_layout(refused, shape)
    assert type(hinted_error) is InvalidArgument and ("np.moveaxis(a, 0, -1)" in str(hinted_error)) == hinted
    other = InvalidArgument(grpc.StatusCode.INVALID_ARGUMENT, "invalid request", [FieldViolation("model.name", "x")])
    assert hint_image_layout(other, shape).hint == ""


def test_the_asyncio_client_retries_unavailable_and_names_the_fields_of_invalid_argument(serve):
    import asyncio

    servicer = FakeSegmenter(failures=2)
    target = serve(servicer)

    async def calls():
        async with dial_client.aio.SegmenterClient(target, retries=FAST_RETRIES) as client:
            result = await client.predict(np.full((2, 2), 4, dtype=np.uint8), model="linknet")
            models = await client.list_models(page_size=2)
            return result, models

    result, models = asyncio.run(calls())
    assert servicer.calls == 3
    np.testing.assert_array_equal(result.labels, np.full((2, 2), 1))
    assert [m.name for m in models] == [f"model-{i}" for i in range(5)]

    trailer = bad_request_trailer(("image.bands", "model expects 3 bands, got 1"), message="injected failure")
    refusing = FakeSegmenter(failures=5, failure_code=grpc.StatusCode.INVALID_ARGUMENT, trailer=trailer)
    target = serve(refusing)

    async def refused():
        async with dial_client.aio.SegmenterClient(target, retries=FAST_RETRIES) as client:
            await client.predict(np.zeros((2, 2), dtype=np.uint8), model="linknet")

    with pytest.raises(InvalidArgument) as raised:
        asyncio.run(refused())
    assert refusing.calls == 1
    assert raised.value.field_violations == (FieldViolation("image.bands", "model expects 3 bands, got 1"),)


# --- packaging ---------------------------------------------------------------


def test_importing_the_client_imports_neither_torch_nor_rasterio_nor_the_core():
    probe = "import sys, dial_client; print(sorted(m for m in ('torch', 'rasterio', 'dial') if m in sys.modules))"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"
