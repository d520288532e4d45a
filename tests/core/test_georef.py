"""Windows and georeferences: the pixel and map arithmetic every service shares, on plain numbers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dial.imagery.georef import IDENTITY, GeoReference, Window

# 0.5 m pixels, north up, top-left corner at (500000, 4000000) in UTM 33N.
UTM = GeoReference("EPSG:32633", (0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0))
# A rotated and sheared grid, so that row and column both move x and y.
SKEWED = GeoReference(None, (2.0, 0.5, 100.0, -0.25, -3.0, 50.0))


def test_a_window_is_a_tuple_with_its_edges_and_slices():
    w = Window(8, 16, 32, 40)
    r, c, h, width = w
    assert (r, c, h, width) == (8, 16, 32, 40) and json.loads(json.dumps(w)) == [8, 16, 32, 40]
    assert (w.bottom, w.right, w.area) == (40, 56, 32 * 40)
    image = np.arange(100 * 100).reshape(100, 100)
    assert image[w.slices].shape == (32, 40) and image[w.slices][0, 0] == image[8, 16]
    assert Window.whole(5, 7) == (0, 0, 5, 7)


@pytest.mark.parametrize("a, b, expected", [
    ((0, 0, 10, 10), (5, 5, 10, 10), True),
    ((0, 0, 10, 10), (10, 0, 10, 10), False),  # edges touch, no pixel in common
    ((0, 0, 10, 10), (0, 10, 10, 10), False),
    ((0, 0, 10, 10), (2, 2, 3, 3), True),      # one inside the other
    ((20, 20, 4, 4), (0, 0, 10, 10), False),
])
def test_windows_overlap_only_when_they_share_a_pixel(a, b, expected):
    assert Window(*a).overlaps(b) is expected and Window(*b).overlaps(a) is expected


def test_clipping_cuts_a_window_to_the_image_and_intersections_can_be_empty():
    assert Window(96, 90, 32, 32).clip(100, 100) == Window(96, 90, 4, 10)
    assert Window(0, 0, 32, 32).clip(100, 100) == Window(0, 0, 32, 32)
    assert Window(0, 0, 10, 10).intersection((20, 20, 5, 5)).is_empty
    assert Window(0, 0, 10, 10).intersection((5, 2, 10, 3)) == Window(5, 2, 5, 3)


@pytest.mark.parametrize("window, inside", [
    ((0, 0, 100, 80), True), ((10, 10, 90, 70), True), ((10, 10, 91, 70), False), ((0, 0, 0, 5), False),
    ((-1, 0, 5, 5), False), ((0, 79, 1, 2), False),
])
def test_inside_means_non_empty_and_within_the_image(window, inside):
    assert Window(*window).inside(100, 80) is inside


def test_pixel_and_map_coordinates_round_trip_through_any_invertible_transform():
    rows, cols = np.array([0.0, 3.5, 99.25]), np.array([0.0, 7.0, 12.5])
    for geo in (UTM, SKEWED):
        xs, ys = geo.pixel_to_map(rows, cols)
        back_rows, back_cols = geo.map_to_pixel(xs, ys)
        np.testing.assert_allclose(back_rows, rows, atol=1e-9)
        np.testing.assert_allclose(back_cols, cols, atol=1e-9)
    assert UTM.pixel_to_map(2, 4) == (500002.0, 3999999.0)
    assert UTM.map_to_pixel(500002.0, 3999999.0) == (2.0, 4.0)


def test_a_non_invertible_transform_maps_no_point_to_a_pixel():
    flat = GeoReference("EPSG:32633", (0.0, 0.0, 1.0, 0.0, -0.5, 2.0))
    assert not flat.invertible and UTM.invertible
    with pytest.raises(ValueError, match="not invertible"):
        flat.map_to_pixel(1.0, 2.0)


def test_a_point_in_another_crs_is_reprojected_before_it_is_placed():
    lon, lat = 15.0, 36.0  # on UTM 33N's central meridian
    from rasterio.warp import transform as warp

    xs, ys = warp("EPSG:4326", "EPSG:32633", [lon], [lat])
    geo = GeoReference("EPSG:32633", (10.0, 0.0, xs[0] - 250.0, 0.0, -10.0, ys[0] + 120.0))
    row, col = geo.map_to_pixel(lon, lat, crs="EPSG:4326")
    assert (row, col) == pytest.approx((12.0, 25.0), abs=1e-6)
    assert geo.map_to_pixel(xs[0], ys[0], crs="EPSG:32633") == pytest.approx((12.0, 25.0), abs=1e-6)


def test_a_windows_georeference_puts_its_first_pixel_where_the_window_starts():
    for geo in (UTM, SKEWED):
        window = Window(8, 16, 32, 40)
        own = geo.for_window(window)
        assert own.crs == geo.crs
        # Every pixel of the window lies where it lay in the whole raster.
        for r, c in [(0, 0), (5, 7), (31, 39)]:
            assert own.pixel_to_map(r, c) == pytest.approx(geo.pixel_to_map(r + 8, c + 16))
    assert UTM.for_window((8, 16, 32, 40)).transform == (0.5, 0.0, 500008.0, 0.0, -0.5, 3999996.0)


def test_bounds_are_the_extremes_of_a_windows_outer_corners():
    assert UTM.bounds((8, 16, 32, 40)) == (500008.0, 3999980.0, 500028.0, 3999996.0)
    min_x, min_y, max_x, max_y = SKEWED.bounds((0, 0, 10, 10))
    corners = [SKEWED.pixel_to_map(r, c) for r in (0, 10) for c in (0, 10)]
    assert (min_x, max_x) == (min(x for x, _ in corners), max(x for x, _ in corners))
    assert (min_y, max_y) == (min(y for _, y in corners), max(y for _, y in corners))


def test_a_plain_image_is_not_georeferenced_and_a_georeference_survives_json():
    assert not GeoReference(None).is_georeferenced and GeoReference(None).transform == IDENTITY
    assert GeoReference("", IDENTITY).crs is None
    assert GeoReference("EPSG:4326").is_georeferenced and SKEWED.is_georeferenced
    assert GeoReference.from_json(json.loads(json.dumps(UTM.to_json()))) == UTM
    with pytest.raises(ValueError, match="6 coefficients"):
        GeoReference("EPSG:4326", (1.0, 0.0, 0.0, 0.0, 1.0))
