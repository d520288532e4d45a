"""Sizes in error messages read height × width, so a user knows which number is the rows."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from dial_client.wire import adapter_pb2, common_pb2
from dial_services.common.errors import ApiError, Violations
from dial_services.common.sources import Sources
from dial_services.common.uri_policy import UriPolicy
from dial_services.common.validation import check_shape


def test_a_window_outside_a_raster_names_its_height_then_width(tmp_path):
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", height=64, width=48, count=3, dtype="uint8", crs="EPSG:32631",
                       transform=from_origin(500000.0, 4000000.0, 0.5, 0.5)) as ds:
        ds.write(np.zeros((3, 64, 48), dtype=np.uint8))
    sources = Sources(UriPolicy([tmp_path]), max_image_px=64 * 64)
    request = adapter_pb2.CreateSessionRequest(raster_window=common_pb2.RasterWindow(
        raster=common_pb2.RasterReference(uri=str(path)),
        window=common_pb2.Window(row_off=60, col_off=0, height=16, width=16)))
    model = type("Model", (), {"name": "tiny", "version": "1", "n_bands": 3, "input_dtype": "uint8"})()
    with pytest.raises(ApiError) as error:
        sources.read(request, model)
    messages = dict(error.value.violations)
    assert "64 × 48 (height × width) raster" in messages["raster_window.window"]


def test_an_image_over_the_pixel_limit_names_its_height_then_width():
    v = Violations()
    assert not check_shape(v, "image", 300, 200, 3, max_px=10_000)
    with pytest.raises(ApiError) as error:
        v.raise_if_any()
    assert "300 × 200 pixels (height × width) exceeds the limit of 10000" in dict(error.value.violations)["image"]
