"""Fuzzing: a seeded corpus of malformed requests against a live segmenter and adapter.

Random bytes in image fields, extreme and inconsistent shapes, unknown enum
values, NaN and infinite coordinates, huge click lists, hostile names, and
rasters by URI that make GDAL read other files or URLs (hostile_files.py) or
paths the file system refuses. Every answer must be OK or a client error
(never INTERNAL or UNKNOWN), GDAL must make no outbound request, the servers
must stay SERVING, and a bystander's session must come out exactly as it was.
The unit tests (``tests/test_fuzz_*.py``) run the same idea with Hypothesis;
this corpus is larger and runs against separate server processes.
"""
from __future__ import annotations

import math
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import grpc
import numpy as np

from tests.support.processes import ServiceProcess, adapter_args, model_args
from benchmarks.reliability.hostile_files import counting_http_server, hostile_outputs, hostile_uris, plant
from tests.support.synthetic import make_scene

# ALREADY_EXISTS: an output named twice without overwrite.
CLIENT_ERRORS = {"INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "OUT_OF_RANGE",
                 "ALREADY_EXISTS"}
SIDES = [0, 1, 2, 31, 64, 257, 65535, 2**31, 2**32 - 1]
DTYPES = [0, 1, 2, 3, 17, 2**31 - 1]
FLOATS = [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e300, -1e-300, 3.5]
# Model names and versions that are paths, too long, or digits outside ASCII ("²".isdigit() is
# True): each one is INVALID_ARGUMENT and never reaches the repository as a folder name.
# tests/hostile_requests.py draws from the same lists.
MODEL_NAMES_REFUSED = ["", "../etc", "../rasters/evil", "/etc/passwd", "tiny/../tiny", "TINY", "tiny\n", "x" * 20000]
MODEL_VERSIONS_REFUSED = ["-1", "latest", "..", "../1", "²", "٣", "３", "1" * 500, "01", "1\n"]


def _image(rng: np.random.Generator, bands: int):
    from dial_client.wire import common_pb2

    if rng.random() < 0.5:  # well-formed, so the rest of the request reaches deeper code
        h, w = int(rng.integers(1, 64)), int(rng.integers(1, 64))
        data = rng.integers(0, 256, h * w * bands, dtype=np.uint8).tobytes()
        image = common_pb2.Image(data=data, dtype=common_pb2.DATA_TYPE_UINT8, height=h, width=w, bands=bands)
    else:
        image = common_pb2.Image(data=rng.bytes(int(rng.integers(0, 600))), dtype=int(rng.choice(DTYPES)),
                                 height=int(rng.choice(SIDES)), width=int(rng.choice(SIDES)),
                                 bands=int(rng.choice([0, 1, 3, 4, 9, 2**32 - 1])))
    if rng.random() < 0.3:
        image.geo.crs = str(rng.choice(["", "EPSG:32631", "EPSG:999999", "not a crs"]))
        image.geo.transform.extend([float(rng.choice(FLOATS)) for _ in range(int(rng.integers(0, 8)))])
    return image


def _clicks(rng: np.random.Generator) -> list:
    from dial_client.wire import common_pb2

    count = int(rng.choice([0, 1, 3, 6, 1001, 20000]))
    out = []
    for i in range(count):
        click = common_pb2.Click(class_id=int(rng.choice([0, 1, 5, 6, 255, 2**32 - 1])) if i < 8 else 1)
        kind = rng.integers(3)
        if kind == 0:
            click.pixel.row, click.pixel.col = (int(rng.choice(SIDES + [5, 10])), int(rng.choice(SIDES + [5, 10])))
        elif kind == 1:
            click.map.x, click.map.y = float(rng.choice(FLOATS)), float(rng.choice(FLOATS))
            click.map.crs = str(rng.choice(["", "EPSG:32631", "EPSG:4326", "garbage"]))
        out.append(click)
    return out


def _model(rng: np.random.Generator, name: str):
    from dial_client.wire import common_pb2

    if rng.random() < 0.75:
        return common_pb2.ModelRef(name=name)
    return common_pb2.ModelRef(name=str(rng.choice(["missing", name + "\x00", *MODEL_NAMES_REFUSED])),
                               version=str(rng.choice(["", "999", *MODEL_VERSIONS_REFUSED])))


def _call(stub_method, request, codes: Counter, unexpected: list) -> None:
    try:
        stub_method(request, timeout=120)
        codes["OK"] += 1
    except grpc.RpcError as error:
        name = error.code().name
        codes[name] += 1
        if name not in CLIENT_ERRORS or "Traceback" in (error.details() or ""):
            unexpected.append(f"{name}: {(error.details() or '')[:200]}")


def fuzz(repo: Path, model: str, scratch: Path, bands: int, requests: int = 300, seed: int = 0) -> dict:
    from dial_client import AdapterClient, Click
    from dial_client.wire import adapter_pb2, adapter_pb2_grpc, common_pb2, segmenter_pb2, segmenter_pb2_grpc

    rng = np.random.default_rng(seed)
    rasters, outside = scratch / "rasters-fuzz", scratch / "outside-fuzz"
    rasters.mkdir()
    outside.mkdir()
    server = ExitStack()
    url, outbound = server.enter_context(counting_http_server())
    planted = plant(rasters, outside, url, bands)
    uris, outputs = hostile_uris(rasters, planted), hostile_outputs(rasters, planted) + [""] * 3
    roots = ["--raster-roots", str(rasters)]
    segmenter = ServiceProcess("segmenter", model_args(repo, scratch / "cache-fuzz-seg") + roots)
    adapter = ServiceProcess("adapter", adapter_args(repo, scratch / "cache-fuzz-ada", scratch / "sessions-fuzz",
                                                     steps=2) + roots)
    try:
        segmenter.wait_serving()
        adapter.wait_serving()
        image = make_scene(128, 128, seed=3).image
        with AdapterClient(adapter.address, timeout=120, caller="bystander") as bystander:
            kept = bystander.create_session(image, model=model)
            kept.add_clicks([Click(5, 5, 1), Click(60, 60, 0)])
            kept.adapt()
            before_info, before_labels = kept.get(), kept.predict().labels

            seg_stub = segmenter_pb2_grpc.SegmenterStub(segmenter.channel)
            ada_stub = adapter_pb2_grpc.AdapterStub(adapter.channel)
            own = AdapterClient(adapter.address, timeout=120, caller="fuzzer").create_session(image, model=model)
            targets = [own.name, kept.name, "sessions/does-not-exist", "", "sessions/../../etc", "x" * 5000]
            codes = {"segmenter": Counter(), "adapter": Counter()}
            unexpected: list[str] = []
            fuzzer = (("caller", "fuzzer"),)
            for index in range(requests):
                kind = index % 6
                if kind == 0:
                    request = segmenter_pb2.PredictRequest(model=_model(rng, model), image=_image(rng, bands),
                                                           clicks=_clicks(rng),
                                                           return_probabilities=bool(rng.integers(2)))
                    _call(seg_stub.Predict, request, codes["segmenter"], unexpected)
                elif kind == 1:
                    request = adapter_pb2.CreateSessionRequest(model=_model(rng, model), image=_image(rng, bands))
                    request.config.variant = int(rng.choice([0, 1, 2, 7, 2**31 - 1]))
                    if rng.random() < 0.5:
                        request.config.learning_rate = float(rng.choice(FLOATS))
                    if rng.random() < 0.5:
                        request.config.steps = int(rng.choice([0, 1, 10**6, 2**32 - 1]))
                    _call(lambda r, timeout: ada_stub.CreateSession(r, timeout=timeout, metadata=fuzzer),
                          request, codes["adapter"], unexpected)
                elif kind == 2:
                    request = adapter_pb2.AddClicksRequest(name=str(rng.choice(targets)), clicks=_clicks(rng))
                    _call(lambda r, timeout: ada_stub.AddClicks(r, timeout=timeout, metadata=fuzzer),
                          request, codes["adapter"], unexpected)
                elif kind == 4:
                    # Always a refused version, so no export is ever written into the repository.
                    request = adapter_pb2.ExportSessionModelRequest(
                        name=str(rng.choice(targets)), model=common_pb2.ModelRef(
                            name=str(rng.choice([model, *MODEL_NAMES_REFUSED])),
                            version=str(rng.choice(MODEL_VERSIONS_REFUSED))))
                    _call(lambda r, timeout: ada_stub.ExportSessionModel(r, timeout=timeout, metadata=fuzzer),
                          request, codes["adapter"], unexpected)
                elif kind == 5 and index % 12 == 5:
                    # A genuine GeoTIFF one time in three, so that hostile headers elsewhere reach deep code.
                    raster = common_pb2.RasterReference(
                        uri=str(planted["good"]) if rng.random() < 0.33 else str(rng.choice(uris)))
                    header = segmenter_pb2.PredictRasterHeader(model=_model(rng, model), raster=raster)
                    output = str(rng.choice(outputs))
                    if output:
                        header.output_uri = output
                    else:
                        header.stream_tiles = True
                    request = segmenter_pb2.PredictRasterRequest(header=header)
                    _call(lambda r, timeout: list(seg_stub.PredictRaster(iter([r]), timeout=timeout)), request,
                          codes["segmenter"], unexpected)
                elif kind == 5:
                    raster = common_pb2.RasterReference(uri=str(rng.choice(uris)))
                    request = adapter_pb2.CreateSessionRequest(model=_model(rng, model), raster=raster)
                    _call(lambda r, timeout: ada_stub.CreateSession(r, timeout=timeout, metadata=fuzzer),
                          request, codes["adapter"], unexpected)
                else:
                    request = adapter_pb2.AdaptRequest(name=str(rng.choice(targets)))
                    if rng.random() < 0.5:
                        request.steps = int(rng.choice([0, 1, 10**6, 2**32 - 1]))
                    _call(lambda r, timeout: ada_stub.Adapt(r, timeout=timeout, metadata=fuzzer),
                          request, codes["adapter"], unexpected)
            after_info, after_labels = kept.get(), kept.predict().labels
            if outbound:
                unexpected.append(f"GDAL made {len(outbound)} outbound request(s), e.g. {outbound[0]}")
        bystander_unharmed = (after_info.clicks == before_info.clicks
                              and after_info.adaptation_count == before_info.adaptation_count
                              and bool(np.array_equal(after_labels, before_labels)))
        return {
            "requests": requests, "seed": seed,
            "codes": {service: dict(sorted(c.items())) for service, c in codes.items()},
            "unexpected_codes": unexpected[:20], "unexpected_count": len(unexpected),
            "segmenter_serving_after": segmenter.serving(), "adapter_serving_after": adapter.serving(),
            "bystander_session_unharmed": bystander_unharmed,
            "sessions_lost": 0 if bystander_unharmed else 1,
        }
    finally:
        segmenter.stop()
        adapter.stop()
        server.close()
