"""What a model sees of a raster: band mapping, rescaling, a window's view, and map rectangles to windows."""
from __future__ import annotations

import numpy as np
import pytest

from dial.imagery.georef import GeoReference, Window
from dial.imagery.raster import RasterInfo
from dial.imagery.view import BandMapping, RasterView


def test_source_bands_pick_reorder_and_repeat_bands():
    pixels = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(BandMapping((3, 1)).apply(pixels, "uint8"), pixels[..., [2, 0]])
    grey = pixels[..., :1]
    replicated = BandMapping((1, 1, 1)).apply(grey, "uint8")
    assert replicated.shape == (2, 2, 3) and (replicated == grey).all()


def test_source_range_maps_eleven_bits_onto_uint8_rounded_and_clipped():
    pixels = np.array([[[0], [1023], [2047], [4000]]], dtype=np.uint16)
    out = BandMapping(source_range=(0, 2047)).apply(pixels, "uint8")
    assert out.dtype == np.uint8
    assert out.ravel().tolist() == [0, 127, 255, 255]  # 1023 * 255 / 2047 = 127.44
    shifted = BandMapping(source_range=(100, 200)).apply(np.array([[[50], [150], [300]]], np.uint16), "uint8")
    assert shifted.ravel().tolist() == [0, 128, 255]
    wide = BandMapping(source_range=(0, 255)).apply(np.array([[[255]]], np.uint8), "uint16")
    assert wide.dtype == np.uint16 and wide.item() == 65535


def test_problems_name_the_part_and_the_fix():
    assert BandMapping().problems(3, "uint8", 3, "uint8") == []
    assert BandMapping((1, 1, 1), (0, 2047)).problems(1, "uint16", 3, "uint8") == []
    found = dict(BandMapping().problems(1, "uint16", 3, "uint8"))
    assert "source_bands [1, 1, 1]" in found["bands"] and "0..2047" in found["dtype"]
    found = dict(BandMapping((1, 4), (5, 5)).problems(3, "uint8", 3, "uint8"))
    assert "lists 2 bands, the model takes 3" in found["source_bands"]
    assert "1..3" in found["source_bands[1]"] and "min < max" in found["source_range"]
    assert "source_bands[0]" not in found
    assert "source_range" in dict(BandMapping(source_range=(0, float("nan"))).problems(3, "uint8", 3, "uint8"))


class _Reader:
    """A RasterReader's interface over an in-memory array, recording the windows read."""

    def __init__(self, image, geo):
        self.image, self.reads, self.closed = image, [], False
        self.info = RasterInfo(image.shape[0], image.shape[1], image.shape[2], image.dtype.name, geo)

    def read(self, row_off, col_off, height, width):
        self.reads.append((row_off, col_off, height, width))
        return self.image[row_off:row_off + height, col_off:col_off + width]

    def close(self):
        self.closed = True


def test_a_view_reads_its_window_mapped_and_georeferences_it():
    image = np.arange(10 * 12, dtype=np.uint16).reshape(10, 12, 1) * 10
    geo = GeoReference("EPSG:32633", (2.0, 0.0, 1000.0, 0.0, -2.0, 5000.0))
    reader = _Reader(image, geo)
    view = RasterView(reader, Window(2, 3, 5, 6), BandMapping((1, 1, 1), (0, 1190)), "uint8")
    assert (view.info.height, view.info.width, view.info.bands, view.info.dtype) == (5, 6, 3, "uint8")
    assert view.info.geo.transform == (2.0, 0.0, 1006.0, 0.0, -2.0, 4996.0)
    tile = view.read(1, 2, 2, 3)
    assert reader.reads == [(3, 5, 2, 3)]
    expected = np.rint(image[3:5, 5:8, 0].astype(np.float64) * 255 / 1190)
    np.testing.assert_array_equal(tile[..., 2], expected)
    with pytest.raises(ValueError, match="inside the 10 × 12"):
        RasterView(reader, Window(8, 0, 5, 5))
    view.close()
    assert reader.closed


def test_a_map_rectangle_becomes_the_pixels_it_touches():
    geo = GeoReference("EPSG:32633", (0.5, 0.0, 400000.0, 0.0, -0.5, 5000000.0))
    # Edges inside pixels take the whole pixel; edges on pixel borders take none beyond them.
    assert geo.window_of(400000.2, 4999990.1, 400004.9, 4999999.6) == Window(0, 0, 20, 10)
    assert geo.window_of(400001.0, 4999990.0, 400005.0, 4999999.0) == Window(2, 2, 18, 8)
    # Off the raster too: cutting it to the raster is the caller's choice.
    assert geo.window_of(399999.0, 4999999.0, 400001.0, 5000001.0) == Window(-2, -2, 4, 4)
    with pytest.raises(ValueError, match="min_x < max_x"):
        geo.window_of(400010.0, 4999990.0, 400000.0, 5000000.0)


def test_a_rectangle_in_another_crs_covers_its_curved_edges():
    from rasterio.warp import transform_bounds

    geo = GeoReference("EPSG:32633", (10.0, 0.0, 400000.0, 0.0, -10.0, 5000000.0))
    inner = (400500.0, 4998000.0, 401500.0, 4999500.0)
    lon_lat = transform_bounds("EPSG:32633", "EPSG:4326", *inner)
    window = geo.window_of(*lon_lat, crs="EPSG:4326")
    # The lon/lat box holds the UTM box, so its window holds the UTM box's pixels, and not much more.
    assert window.row_off <= 50 and window.col_off <= 50 and window.bottom >= 200 and window.right >= 150
    assert window.height <= 160 and window.width <= 110
