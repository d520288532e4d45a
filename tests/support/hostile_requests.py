"""Hypothesis strategies for hostile requests, shared by the services' fuzz tests."""
from __future__ import annotations

import math
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from benchmarks.reliability.fuzz import MODEL_NAMES_REFUSED, MODEL_VERSIONS_REFUSED
from benchmarks.reliability.hostile_files import hostile_outputs, hostile_uris, plant
from dial_client.wire import common_pb2

CLIENT_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SIDES = st.one_of(st.sampled_from([0, 1, 2, 31, 64, 257, 65535, 2**31, 2**32 - 1]), st.integers(0, 96))
DTYPES = st.sampled_from([common_pb2.DATA_TYPE_UNSPECIFIED, common_pb2.DATA_TYPE_UINT8, common_pb2.DATA_TYPE_UINT16,
                          3, 17, 2**31 - 1])
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
PIXELS = st.one_of(st.integers(0, 60), SIDES)
# A model the "tiny" repository lacks (NOT_FOUND), or a name or version refused by the one rule (INVALID_ARGUMENT).
MODEL_NAMES = st.sampled_from(["missing", "tiny\x00", *MODEL_NAMES_REFUSED])
MODEL_VERSIONS = st.sampled_from(["1", "999", *MODEL_VERSIONS_REFUSED])


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
    image.geo.CopyFrom(draw(geo_references()))
    return image


HOSTILE_CRS = ["", "EPSG:32631", "EPSG:4326", "EPSG:999999", "not a crs", "+proj=nonsense", "{}", "x" * 20000]


@st.composite
def geo_references(draw) -> common_pb2.GeoReference:
    """None, a valid UTM georeference, or a hostile CRS with any list of floats (NaN, infinities, zeros)."""
    geo = common_pb2.GeoReference()
    kind = draw(st.sampled_from(["none", "valid", "hostile"]))
    if kind == "valid":
        geo.crs = "EPSG:32631"
        geo.transform.extend([0.5, 0.0, 500000.0, 0.0, -0.5, 5000000.0])
    elif kind == "hostile":
        geo.crs = draw(st.sampled_from(HOSTILE_CRS))
        geo.transform.extend(draw(st.one_of(st.lists(FLOATS, max_size=7),
                                            st.sampled_from([[0.0] * 6, [0.5, 0.0, 0.0, 1.0, 0.0, 0.0]]))))
    return geo


@st.composite
def tile_streams(draw, manifest) -> list:
    """A PredictRaster request stream of tiles: a hostile header, then windows that may overlap, repeat, leave
    gaps or lie outside the raster."""
    from dial_client.wire import segmenter_pb2

    height, width = draw(mostly(32, SIDES)), draw(mostly(32, SIDES))
    bands = draw(mostly(manifest.n_bands, st.sampled_from([0, 2, 4, 2**32 - 1])))
    dtype = draw(mostly(common_pb2.DATA_TYPE_UINT8, DTYPES))
    header = segmenter_pb2.TiledRasterHeader(height=height, width=width, bands=bands, dtype=dtype,
                                             geo=draw(geo_references()))
    requests = [segmenter_pb2.PredictRasterRequest(header=segmenter_pb2.PredictRasterHeader(
        model=common_pb2.ModelRef(name="tiny"), tiles=header, stream_tiles=True))]
    if draw(mostly(True, st.just(False))) and 0 < height <= 64 and 0 < width <= 64:
        # Halves of the raster; one time in four the same half twice.
        half = height // 2 or 1
        windows = [(0, 0, half, width), draw(mostly((half, 0, height - half, width), st.just((0, 0, half, width))))]
    else:
        windows = draw(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 40),
                                          st.integers(0, 40)), max_size=4))
    for row, col, h, w in windows:
        size = h * w * manifest.n_bands
        image = common_pb2.Image(data=bytes(size), dtype=common_pb2.DATA_TYPE_UINT8, height=h, width=w,
                                 bands=manifest.n_bands)
        requests.append(segmenter_pb2.PredictRasterRequest(tile=segmenter_pb2.ImageTile(
            window=common_pb2.Window(row_off=row, col_off=col, height=h, width=w), image=image)))
    return requests


@st.composite
def clicks(draw, max_clicks: int) -> list[common_pb2.Click]:
    count = draw(st.one_of(st.integers(0, 6), st.sampled_from([max_clicks, max_clicks + 1, 5000])))
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


def planted_rasters(root: Path, bands: int) -> tuple[list[str], list[str]]:
    """Plant the reliability corpus's hostile files in ``root`` (and a folder beside it, outside the root).

    Returns raster URIs that make GDAL read other files or URLs, or that the
    file system refuses, and output URIs that must be refused (a folder, a
    FIFO, the input itself, too long). Port 9 refuses connections, should a
    server ever try one.
    """
    outside = root.parent / f"{root.name}-outside"
    outside.mkdir()
    files = plant(root, outside, "http://127.0.0.1:9", bands)
    return hostile_uris(root, files), hostile_outputs(root, files)
