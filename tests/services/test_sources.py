"""Request sources: every service reads an inline image, a raster or a raster window the same way."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from dial.errors import NotFound
from dial.imagery.georef import GeoReference, Window
from dial_client.wire import acquisition_pb2, adapter_pb2, common_pb2, image_to_proto
from dial_services.common.errors import ApiError
from dial_services.common.sources import Sources, bounds_to_proto, window_from_proto, window_to_proto
from dial_services.common.uri_policy import UriPolicy

MODEL = SimpleNamespace(name="tiny", version="1", n_bands=3, input_dtype="uint8")


@pytest.fixture()
def raster(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (64, 48, 3), dtype=np.uint8)
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", height=64, width=48, count=3, dtype="uint8", crs="EPSG:32631",
                       transform=from_origin(500000.0, 4000000.0, 0.5, 0.5)) as ds:
        ds.write(np.moveaxis(image, -1, 0))
    return Sources(UriPolicy([tmp_path]), max_image_px=64 * 64), str(path), image


def fields(error: pytest.ExceptionInfo) -> set[str]:
    return {f for f, _ in error.value.violations}


def test_a_raster_window_comes_with_the_georeference_of_its_own_first_pixel(raster):
    sources, uri, image = raster
    request = adapter_pb2.CreateSessionRequest(raster_window=common_pb2.RasterWindow(
        raster=common_pb2.RasterReference(uri=uri), window=common_pb2.Window(row_off=8, col_off=16, height=32,
                                                                             width=24)))
    read = sources.read(request, MODEL)
    np.testing.assert_array_equal(read.image, image[8:40, 16:40])
    assert read.window == Window(8, 16, 32, 24)
    assert read.geo == GeoReference("EPSG:32631", (0.5, 0.0, 500008.0, 0.0, -0.5, 3999996.0))
    whole = sources.read(acquisition_pb2.GetUncertaintyMapRequest(raster=common_pb2.RasterReference(uri=uri)), MODEL)
    assert whole.window == Window(0, 0, 64, 48) and whole.geo.transform[2] == 500000.0


def test_an_inline_image_is_its_own_whole_window(raster):
    sources, _, image = raster
    message = image_to_proto(image[:10, :12])
    message.geo.CopyFrom(common_pb2.GeoReference(crs="EPSG:32631", transform=[1, 0, 10, 0, -1, 20]))
    read = sources.read(acquisition_pb2.GetUncertaintyMapRequest(image=message), MODEL)
    assert read.window == Window(0, 0, 10, 12) and read.geo == GeoReference("EPSG:32631", (1, 0, 10, 0, -1, 20))
    np.testing.assert_array_equal(read.image, image[:10, :12])


@pytest.mark.parametrize("window", [(40, 0, 32, 16), (0, 0, 0, 16), (0, 40, 8, 9)])
def test_a_window_outside_the_raster_is_that_fields_error(raster, window):
    sources, uri, _ = raster
    row, col, height, width = window
    request = adapter_pb2.CreateSessionRequest(raster_window=common_pb2.RasterWindow(
        raster=common_pb2.RasterReference(uri=uri),
        window=common_pb2.Window(row_off=row, col_off=col, height=height, width=width)))
    with pytest.raises(ApiError) as error:
        sources.read(request, MODEL)
    assert "raster_window.window" in fields(error)


def test_limits_and_the_model_are_checked_before_a_pixel_is_read(raster):
    sources, uri, _ = raster
    small = Sources(sources.policy, max_image_px=100)
    with pytest.raises(ApiError) as error:
        small.read_raster(uri, "spec.rasters[1]", MODEL)
    assert fields(error) == {"spec.rasters[1]"}
    with pytest.raises(ApiError) as error:
        sources.read_raster(uri, "raster", SimpleNamespace(**(vars(MODEL) | {"n_bands": 4})))
    assert fields(error) == {"raster.bands"}
    with pytest.raises(NotFound) as error:
        sources.read_raster(uri + ".missing", "raster", MODEL)
    assert "raster.uri" in str(error.value)
    with pytest.raises(ApiError) as error:
        sources.read(adapter_pb2.CreateSessionRequest(), MODEL)
    assert fields(error) == {"source"}


def test_windows_and_bounds_in_protobuf(raster):
    assert window_from_proto(window_to_proto(Window(1, 2, 3, 4))) == Window(1, 2, 3, 4)
    geo = GeoReference("EPSG:32631", (0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0))
    bounds = bounds_to_proto(geo, (8, 16, 32, 24))
    assert (bounds.min_x, bounds.min_y, bounds.max_x, bounds.max_y, bounds.crs) == (
        500008.0, 3999980.0, 500020.0, 3999996.0, "EPSG:32631")
    assert bounds_to_proto(None, (0, 0, 1, 1)) == common_pb2.MapBounds()
