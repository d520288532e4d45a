"""Streams and sizes a hostile or careless caller controls: idle streams, worker exhaustion, huge replies,
and tile streams whose header or windows are wrong.

Each case runs against a real in-process segmenter with short timeouts, and
checks both the status the caller gets and that a bystander is unaffected.
"""
from __future__ import annotations

import math
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dial_client.wire import common_pb2, segmenter_pb2, segmenter_pb2_grpc
from dial_services.common.auth import hash_token
from dial_services.common.config import MiB, ConfigError, ServerConfig, load_config
from dial_services.segmenter.config import SegmenterConfig
from dial_services.segmenter.batching import MemoryBudget, OverBudget
from dial_services.segmenter.raster_job import TileCoverage
from tests.support.ports import free_port

ALICE, BOB = "alice-token-0c5d1e", "bob-token-9a7f42"
IDLE_S = 1.5


@pytest.fixture()
def tokens_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"alice:{hash_token(ALICE)}\nbob:{hash_token(BOB)}\n")
    return path


@pytest.fixture()
def make_segmenter(tiny_repo, tmp_path):
    """Start segmenters with config overrides; every one is stopped at the end."""
    from dial_services.segmenter.main import start

    started = []

    def make(**overrides):
        settings = dict(host="127.0.0.1", port=0, model_repo=tiny_repo, raster_roots=(tmp_path,),
                        stream_idle_timeout_seconds=IDLE_S)
        settings.update(overrides)
        running = start(SegmenterConfig(**settings))
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop(0)


def _auth(token: str | None):
    return [("authorization", f"Bearer {token}")] if token else None


def _image(manifest, h: int, w: int, seed: int = 0) -> common_pb2.Image:
    data = np.random.default_rng(seed).integers(0, 255, (h, w, manifest.n_bands), dtype=np.uint8)
    return common_pb2.Image(data=data.tobytes(), dtype=common_pb2.DATA_TYPE_UINT8, height=h, width=w,
                            bands=manifest.n_bands)


def _predict(channel, manifest, token=None, h=64, w=64, probabilities=False, timeout=30.0):
    stub = segmenter_pb2_grpc.SegmenterStub(channel)
    request = segmenter_pb2.PredictRequest(model=common_pb2.ModelRef(name="tiny"), image=_image(manifest, h, w),
                                           return_probabilities=probabilities)
    return stub.Predict(request, timeout=timeout, metadata=_auth(token))


def _tiles_header(manifest, h=64, w=64, crs="", transform=()) -> segmenter_pb2.PredictRasterRequest:
    tiles = segmenter_pb2.TiledRasterHeader(height=h, width=w, bands=manifest.n_bands,
                                            dtype=common_pb2.DATA_TYPE_UINT8,
                                            geo=common_pb2.GeoReference(crs=crs, transform=list(transform)))
    return segmenter_pb2.PredictRasterRequest(header=segmenter_pb2.PredictRasterHeader(
        model=common_pb2.ModelRef(name="tiny"), tiles=tiles, stream_tiles=True))


def _tile(manifest, row, col, h, w) -> segmenter_pb2.PredictRasterRequest:
    return segmenter_pb2.PredictRasterRequest(tile=segmenter_pb2.ImageTile(
        window=common_pb2.Window(row_off=row, col_off=col, height=h, width=w),
        image=_image(manifest, h, w, seed=row * 1000 + col)))


def _stalling(messages, release: threading.Event):
    """Send ``messages``, then nothing until ``release``, without closing the stream."""
    yield from messages
    release.wait(60)


def _raster_call(channel, requests, token=None, timeout=60.0):
    """Run a PredictRaster to the end: ("OK", responses) or (status code, details)."""
    stub = segmenter_pb2_grpc.SegmenterStub(channel)
    try:
        return "OK", list(stub.PredictRaster(requests, timeout=timeout, metadata=_auth(token)))
    except grpc.RpcError as error:
        return error.code(), error.details() or ""


def _health(channel, service: str = "", timeout: float = 5.0):
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                      timeout=timeout).status


def _in_flight(running) -> float:
    return running.metrics.registry.get_sample_value("dial_grpc_requests_in_flight", {"service": "segmenter"}) or 0


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


def _tiles_processed(running) -> float:
    return running.metrics.registry.get_sample_value("dial_tiles_processed_total",
                                                     {"model": "tiny", "version": "1"}) or 0


# Idle streams and worker exhaustion ----------------------------------------------------------------------------

def test_idle_streams_from_one_caller_do_not_starve_another_caller(make_segmenter, tokens_file, tiny_manifest):
    """Four PredictRaster streams that send a header and then nothing, as in the review, from one caller."""
    running = make_segmenter(auth_tokens_file=tokens_file, max_workers=5, max_calls_per_caller=4)
    release = threading.Event()
    address = f"127.0.0.1:{running.port}"
    with grpc.insecure_channel(address) as channel, futures.ThreadPoolExecutor(5) as pool:
        started = time.monotonic()
        idle = [pool.submit(_raster_call, channel, _stalling([_tiles_header(tiny_manifest)], release), ALICE)
                for _ in range(4)]
        try:
            _wait_for(lambda: _in_flight(running) >= 4, 10, "the four idle streams hold workers")
            # A fifth call from the same caller is over its limit, not queued behind its own streams.
            with pytest.raises(grpc.RpcError) as over:
                _predict(channel, tiny_manifest, ALICE, timeout=10)
            assert over.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # The bystander and the main port's health check are answered while the streams are still open.
            assert _predict(channel, tiny_manifest, BOB, timeout=10).class_map.height == 64
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
            assert not any(f.done() for f in idle), "the idle streams ended before the bystander was answered"
            outcomes = [f.result(30) for f in idle]
        finally:
            release.set()
        ended_after = time.monotonic() - started
    for code, details in outcomes:
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED, (code, details)
        assert "no request message arrived" in details
    # Ended by the server's idle timeout, far before the client's own 60 s deadline.
    assert ended_after < 30
    assert _in_flight(running) == 0
    assert running.metrics.registry.get_sample_value(
        "dial_client_streams_timed_out_total", {"service": "segmenter", "method": "PredictRaster"}) == 4
    # The threads that waited on the silent streams end with the calls.
    _wait_for(lambda: not [t for t in threading.enumerate() if t.name == "segmenter-PredictRaster-reader"], 10,
              "the stream readers have ended")
    with grpc.insecure_channel(address) as channel:
        assert _predict(channel, tiny_manifest, ALICE).class_map.width == 64  # the slots came back


def test_a_stream_that_stalls_between_tiles_is_ended(make_segmenter, tiny_manifest):
    running = make_segmenter()
    release = threading.Event()
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        try:
            code, details = _raster_call(channel, _stalling([_tiles_header(tiny_manifest),
                                                             _tile(tiny_manifest, 0, 0, 32, 64)], release))
        finally:
            release.set()
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "no request message arrived" in details
        assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert _predict(channel, tiny_manifest).class_map.height == 64


def test_a_stream_that_keeps_trickling_is_ended_by_the_read_timeout(make_segmenter, tiny_manifest):
    running = make_segmenter(stream_idle_timeout_seconds=2.0, stream_read_timeout_seconds=1.0)

    def trickle():
        yield _tiles_header(tiny_manifest, h=64, w=64)
        for row in range(0, 64, 8):
            time.sleep(0.4)  # each pause is below the idle timeout; together they pass the read timeout
            yield _tile(tiny_manifest, row, 0, 8, 64)

    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        code, details = _raster_call(channel, trickle())
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "took longer than" in details, (code, details)
        assert _predict(channel, tiny_manifest).class_map.height == 64


def test_the_probe_says_not_serving_while_every_worker_is_busy(make_segmenter, tiny_manifest):
    running = make_segmenter(max_workers=2, health_port=free_port())
    release = threading.Event()
    with grpc.insecure_channel(f"127.0.0.1:{running.health_port}") as probe, \
            grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel, futures.ThreadPoolExecutor(2) as pool:
        assert _health(probe) == health_pb2.HealthCheckResponse.SERVING
        try:
            idle = [pool.submit(_raster_call, channel, _stalling([_tiles_header(tiny_manifest)], release))
                    for _ in range(2)]
            _wait_for(lambda: _health(probe) == health_pb2.HealthCheckResponse.NOT_SERVING, 10,
                      "the probe reports the exhausted workers")
            assert not any(f.done() for f in idle)
            assert _health(probe, "dial.v1.Segmenter") == health_pb2.HealthCheckResponse.NOT_SERVING
            # Busy is not broken: the liveness probe's service still answers SERVING, so no restart.
            assert _health(probe, "liveness") == health_pb2.HealthCheckResponse.SERVING
            outcomes = [f.result(30) for f in idle]
        finally:
            release.set()
        assert [code for code, _ in outcomes] == [grpc.StatusCode.DEADLINE_EXCEEDED] * 2
        _wait_for(lambda: _health(probe) == health_pb2.HealthCheckResponse.SERVING, 10,
                  "the probe reports SERVING again once a worker is free")
        assert _predict(channel, tiny_manifest).class_map.height == 64


def test_a_per_caller_limit_not_below_the_workers_is_refused_at_start_up(tokens_file):
    with pytest.raises(ConfigError) as error:
        load_config(ServerConfig, {"max_workers": 4, "max_calls_per_caller": 4, "auth_tokens_file": str(tokens_file)})
    message = str(error.value)
    assert "--max-calls-per-caller" in message and "--max-workers" in message
    assert load_config(ServerConfig, {"max_workers": 4, "max_calls_per_caller": 3,
                                      "auth_tokens_file": str(tokens_file)}).max_calls_per_caller == 3
    # The defaults obey the rule.
    assert load_config(ServerConfig, {"auth_tokens_file": str(tokens_file)}).auth_enabled


def test_a_tokens_file_limit_not_below_the_workers_is_refused_at_start_up(tmp_path):
    from dial_services.common.metrics import ServiceMetrics
    from dial_services.common.server import start_server

    path = tmp_path / "tokens.json"
    path.write_text('{"callers": {"alice": {"sha256": "%s", "max_concurrent_calls": 4}}}' % hash_token(ALICE))
    config = ServerConfig(host="127.0.0.1", port=0, max_workers=4, max_calls_per_caller=2, auth_tokens_file=path)
    with pytest.raises(ConfigError) as error:
        start_server(config, ServiceMetrics("test"), lambda server: ())
    assert "'alice'" in str(error.value) and "--max-workers" in str(error.value)


def test_stream_timeouts_are_typed_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("DIAL_STREAM_IDLE_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("DIAL_STREAM_READ_TIMEOUT_SECONDS", "60")
    config = load_config(ServerConfig, {})
    assert (config.stream_idle_timeout_seconds, config.stream_read_timeout_seconds) == (2.5, 60.0)
    monkeypatch.setenv("DIAL_STREAM_IDLE_TIMEOUT_SECONDS", "0")
    with pytest.raises(ConfigError) as error:
        load_config(ServerConfig, {})
    assert "DIAL_STREAM_IDLE_TIMEOUT_SECONDS" in str(error.value)


# Replies too large to send, and memory ------------------------------------------------------------------------

def test_an_oversize_reply_is_refused_before_any_work(make_segmenter, tiny_manifest):
    running = make_segmenter(max_message_bytes=MiB)
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        before = _tiles_processed(running)
        # 560x560 fits in a 1 MiB request, but its labels and six probability planes do not fit in the reply.
        with pytest.raises(grpc.RpcError) as error:
            _predict(channel, tiny_manifest, h=560, w=560, probabilities=True)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "PredictRaster" in error.value.details() and "return_probabilities" in error.value.details()
        assert _tiles_processed(running) == before, "tiles ran through the model for a reply that cannot be sent"
        # The same image without probabilities fits, and is computed.
        response = _predict(channel, tiny_manifest, h=560, w=560)
        assert (response.class_map.height, response.class_map.width) == (560, 560)
        assert _tiles_processed(running) > before
        assert _health(channel) == health_pb2.HealthCheckResponse.SERVING


def test_probabilities_are_unchanged_by_block_quantisation(make_segmenter, tiny_repo, tiny_manifest):
    """The reply is quantised row block by row block; it must equal quantising the whole image at once."""
    from dial.inference.classwise import class_argmax
    from dial.inference.tiling import array_reader, iter_blended_rows
    from dial.model.repository import ModelRef
    from dial_client.wire import probabilities_to_proto
    from dial_services.common.metrics import ServiceMetrics
    from dial_services.segmenter.models import ModelRegistry

    running = make_segmenter()
    h, w = 300, 200
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        response = _predict(channel, tiny_manifest, h=h, w=w, probabilities=True)
    registry = ModelRegistry(SegmenterConfig(model_repo=tiny_repo), ServiceMetrics("reference"))
    try:
        model = registry.get(ModelRef("tiny", None))
        image = np.frombuffer(_image(tiny_manifest, h, w).data, np.uint8).reshape(h, w, tiny_manifest.n_bands)
        probs = np.concatenate([block for _, _, block in iter_blended_rows(
            model.bound(None), array_reader(image), h, w, output="probabilities")], axis=1)
    finally:
        registry.close()
    expected = np.frombuffer(probabilities_to_proto(probs).data, np.uint8).reshape(probs.shape)
    got = np.frombuffer(response.probabilities.data, np.uint8).reshape(probs.shape)
    assert (response.probabilities.classes, response.probabilities.height) == (tiny_manifest.n_classes, h)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    labels = np.frombuffer(response.class_map.data, np.uint8).reshape(h, w)
    assert (labels != class_argmax(probs)).mean() < 0.001


def test_a_request_larger_than_the_memory_budget_is_refused(make_segmenter, tiny_manifest):
    running = make_segmenter(max_inflight_bytes=MiB)
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        before = _tiles_processed(running)
        with pytest.raises(grpc.RpcError) as error:
            _predict(channel, tiny_manifest, h=256, w=256, probabilities=True)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "working memory" in error.value.details()
        assert _tiles_processed(running) == before
        assert running.metrics.registry.get_sample_value("dial_memory_budget_refusals_total",
                                                         {"method": "Predict"}) == 1


def test_calls_give_their_memory_back(make_segmenter, tiny_manifest):
    running = make_segmenter()
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel, futures.ThreadPoolExecutor(3) as pool:
        calls = [pool.submit(_predict, channel, tiny_manifest, None, 200, 200, True) for _ in range(3)]
        assert all(c.result(60).class_map.height == 200 for c in calls)
        # A call whose deadline passes while it runs gives its memory back too.
        try:
            _predict(channel, tiny_manifest, h=1024, w=1024, timeout=0.5)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        code, _ = _raster_call(channel, iter([_tiles_header(tiny_manifest), _tile(tiny_manifest, 0, 0, 64, 64)]))
        assert code == "OK"
    _wait_for(lambda: _in_flight(running) == 0, 10, "every call has ended")
    assert running.metrics.registry.get_sample_value("dial_memory_budget_in_use_bytes") == 0


def test_memory_budget_refuses_what_does_not_fit_and_takes_back_what_is_released():
    budget = MemoryBudget(100)
    budget.acquire(60)
    with pytest.raises(OverBudget) as over:
        budget.acquire(50)
    assert (over.value.wanted, over.value.in_use, over.value.limit) == (50, 60, 100)
    budget.acquire(40)
    assert budget.in_use == 100
    budget.release(60)
    budget.acquire(50)
    assert budget.in_use == 90


# Tile-stream headers and windows ------------------------------------------------------------------------------

VALID_TRANSFORM = (0.5, 0.0, 500000.0, 0.0, -0.5, 5000000.0)
HOSTILE_HEADERS = {
    "garbage CRS": (dict(crs="not a crs", transform=VALID_TRANSFORM), "header.tiles.geo.crs"),
    "unknown EPSG code": (dict(crs="EPSG:999999", transform=VALID_TRANSFORM), "header.tiles.geo.crs"),
    "megabyte CRS": (dict(crs="x" * 1_000_000, transform=VALID_TRANSFORM), "header.tiles.geo.crs"),
    "NaN transform": (dict(crs="EPSG:32631", transform=(math.nan, 0, 500000.0, 0, -0.5, 5000000.0)),
                      "header.tiles.geo.transform"),
    "infinite transform": (dict(crs="EPSG:32631", transform=(0.5, 0, math.inf, 0, -0.5, 5000000.0)),
                           "header.tiles.geo.transform"),
    "negative infinity": (dict(crs="", transform=(0.5, 0, 0, 0, -math.inf, 0)), "header.tiles.geo.transform"),
    "zero pixel size": (dict(crs="EPSG:32631", transform=(0.0, 0, 500000.0, 0, 0.0, 5000000.0)),
                        "header.tiles.geo.transform"),
    "five coefficients": (dict(crs="EPSG:32631", transform=VALID_TRANSFORM[:5]), "header.tiles.geo.transform"),
}


@pytest.fixture()
def bystander(make_segmenter, tiny_manifest):
    """A server, a channel to it, and the bystander's Predict answer before any hostile call."""
    running = make_segmenter()
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    yield running, channel, _predict(channel, tiny_manifest).class_map.data
    channel.close()


@pytest.mark.parametrize("case", sorted(HOSTILE_HEADERS))
def test_hostile_tile_stream_headers_get_invalid_argument(bystander, tiny_manifest, case):
    running, channel, before = bystander
    geo, field = HOSTILE_HEADERS[case]
    requests = [_tiles_header(tiny_manifest, **geo), _tile(tiny_manifest, 0, 0, 64, 64)]
    code, details = _raster_call(channel, iter(requests))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert field in details and "Traceback" not in details and len(details) < 2000
    assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
    assert _predict(channel, tiny_manifest).class_map.data == before


def test_a_valid_georeferenced_tile_stream_is_served(bystander, tiny_manifest):
    _, channel, _ = bystander
    requests = [_tiles_header(tiny_manifest, crs="EPSG:32631", transform=VALID_TRANSFORM),
                _tile(tiny_manifest, 0, 0, 32, 64), _tile(tiny_manifest, 32, 0, 32, 64)]
    code, responses = _raster_call(channel, iter(requests))
    assert code == "OK"
    result = responses[-1].result
    assert result.geo.crs == "EPSG:32631" and tuple(result.geo.transform) == VALID_TRANSFORM


@pytest.mark.parametrize("tiles, field, words", [
    # The review's case: the top half twice, the bottom half never.
    ([(0, 0, 32, 64), (0, 0, 32, 64)], "request[2].tile.window", "overlaps the window of request[1]"),
    # A partial overlap whose areas would add up to the raster's.
    ([(0, 0, 40, 64), (24, 0, 40, 64)], "request[2].tile.window", "overlaps"),
    ([(0, 0, 64, 40), (0, 30, 64, 34)], "request[2].tile.window", "overlaps"),
    ([(0, 0, 32, 64)], "tiles", "cover 2048 of 4096"),
])
def test_tile_streams_that_do_not_cover_the_raster_exactly_are_refused(bystander, tiny_manifest, tiles, field,
                                                                       words):
    _, channel, before = bystander
    requests = [_tiles_header(tiny_manifest)] + [_tile(tiny_manifest, *t) for t in tiles]
    code, details = _raster_call(channel, iter(requests))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert field in details and words in details, details
    assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
    assert _predict(channel, tiny_manifest).class_map.data == before


def test_tile_coverage_compares_windows_across_cells():
    coverage = TileCoverage()
    cell = TileCoverage.CELL_PX
    assert coverage.add(1, 0, 0, cell * 2, cell * 2) is None
    assert coverage.add(2, 0, cell * 2, cell, cell) is None  # touches, does not overlap
    assert coverage.add(3, cell * 2 - 1, cell * 2 - 1, 1, 1) == 1  # the last pixel of the first window
    assert coverage.add(4, cell // 2, cell * 2 + cell // 2, 1, cell * 3) == 2
    assert coverage.covered == 4 * cell * cell + cell * cell


def test_the_liveness_probe_asks_for_the_service_the_server_keeps_serving():
    """Readiness follows worker exhaustion; liveness must not, or a busy replica would be restarted."""
    import yaml

    from dial_services.common.server import LIVENESS

    base = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base"
    probes = 0
    for name in ("segmenter", "adapter", "acquisition"):
        for document in yaml.safe_load_all((base / f"{name}.yaml").read_text()):
            if document and document.get("kind") == "Deployment":
                for container in document["spec"]["template"]["spec"]["containers"]:
                    assert container["livenessProbe"]["grpc"]["service"] == LIVENESS
                    assert "service" not in container["readinessProbe"]["grpc"]
                    probes += 1
    assert probes == 3
