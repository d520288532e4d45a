"""PredictRaster's vector output: the class map's polygons as a GeoPackage (the raster's CRS) or GeoJSON
(RFC 7946, WGS 84), next to the GeoTIFF or the streamed tiles, read back with pyogrio."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from tests.support.synthetic import make_scene
from dial_client import SegmenterClient
from dial_client.errors import InvalidArgument, PermissionDenied

PIXEL_M = 0.5
ORIGIN = (400000.0, 5000000.0)


def _write(path, image, crs="EPSG:32633"):
    profile = {"crs": crs, "transform": from_origin(*ORIGIN, PIXEL_M, PIXEL_M)} if crs else {}
    with rasterio.open(path, "w", driver="GTiff", height=image.shape[0], width=image.shape[1],
                       count=image.shape[2], dtype=image.dtype.name, **profile) as ds:
        ds.write(np.moveaxis(image, -1, 0))


def _read(path):
    """(crs, class ids, class names, shapely polygons) of a vector file, as GDAL reads it."""
    meta, _, wkb, (class_ids, class_names) = pyogrio.raw.read(path)
    assert list(meta["fields"]) == ["class_id", "class_name"]
    return meta["crs"], np.asarray(class_ids), np.asarray(class_names), shapely.from_wkb(wkb)


@pytest.fixture()
def scene_tif(raster_root):
    path = raster_root / "scene.tif"
    _write(path, make_scene(160, 200, seed=21).image)
    return path


def test_a_geopackage_next_to_the_geotiff_holds_every_pixel_once_by_class(segmenter, scene_tif, raster_root,
                                                                           tiny_manifest):
    address, _ = segmenter
    out, polygons = raster_root / "classes.tif", raster_root / "classes.gpkg"
    with SegmenterClient(address) as client:
        result = client.predict_raster(str(scene_tif), model="tiny", output_uri=str(out), vector_uri=str(polygons))
    assert result.vector_uri == str(polygons) and result.output_uri == str(out)
    with rasterio.open(out) as ds:
        labels, crs = ds.read(1), ds.crs
    vector_crs, class_ids, class_names, shapes = _read(polygons)
    assert len(shapes) == result.vector_features > 1
    assert rasterio.crs.CRS.from_user_input(vector_crs) == crs
    assert all(name == tiny_manifest.class_names[i] for i, name in zip(class_ids, class_names))
    # Each class's polygons cover exactly its pixels: the area, in map units, of its pixel count.
    pixel_area = PIXEL_M * PIXEL_M
    for class_id in np.unique(labels):
        area = shapely.area(shapes[class_ids == class_id]).sum()
        assert area == pytest.approx(np.count_nonzero(labels == class_id) * pixel_area)


def test_geojson_with_streamed_tiles_is_wgs84_and_leaves_no_scratch_file(segmenter, scene_tif, raster_root):
    address, _ = segmenter
    polygons = raster_root / "window.geojson"
    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("dial-classmap-*"))
    with SegmenterClient(address) as client:
        result = client.predict_raster(str(scene_tif), model="tiny", window=(20, 30, 64, 80),
                                       vector_uri=str(polygons))
    assert result.output_uri == "" and result.labels.shape == (64, 80)
    assert set(scratch.glob("dial-classmap-*")) == before
    vector_crs, class_ids, _, shapes = _read(polygons)
    assert rasterio.crs.CRS.from_user_input(vector_crs) == rasterio.crs.CRS.from_epsg(4326)
    assert len(shapes) == result.vector_features
    assert sorted(set(class_ids.tolist())) == sorted(np.unique(result.labels).tolist())
    # The polygons cover the window, not the raster: its bounds in longitude/latitude.
    x0, y0 = ORIGIN
    west, south, east, north = transform_bounds("EPSG:32633", "EPSG:4326", x0 + 30 * PIXEL_M, y0 - 84 * PIXEL_M,
                                                x0 + 110 * PIXEL_M, y0 - 20 * PIXEL_M)
    minx, miny, maxx, maxy = shapely.total_bounds(shapes)
    assert (minx, miny, maxx, maxy) == pytest.approx((west, south, east, north), abs=1e-7)


def test_bad_vector_outputs_are_refused_before_any_work(segmenter, scene_tif, raster_root, tmp_path):
    address, _ = segmenter
    plain = raster_root / "plain.tif"
    _write(plain, make_scene(32, 32, seed=3).image, crs=None)
    with SegmenterClient(address) as client:
        with pytest.raises(InvalidArgument) as shapefile:
            client.predict_raster(str(scene_tif), model="tiny", vector_uri=str(raster_root / "x.shp"))
        with pytest.raises(PermissionDenied):
            client.predict_raster(str(scene_tif), model="tiny", vector_uri=str(tmp_path / "outside.gpkg"))
        with pytest.raises(InvalidArgument) as no_crs:
            client.predict_raster(str(plain), model="tiny", vector_uri=str(raster_root / "plain.geojson"))
        # Without a CRS a GeoPackage still works, in pixel units.
        result = client.predict_raster(str(plain), model="tiny", vector_uri=str(raster_root / "plain.gpkg"))
    assert ".gpkg or .geojson" in shapefile.value.field_violations[0].description
    assert "no CRS" in no_crs.value.field_violations[0].description
    assert not (raster_root / "plain.geojson").exists()
    assert result.vector_features == len(_read(raster_root / "plain.gpkg")[3]) > 0


def test_an_existing_vector_file_is_replaced_only_with_overwrite(segmenter, scene_tif, raster_root):
    from dial_client.errors import AlreadyExists

    address, _ = segmenter
    polygons = raster_root / "kept.gpkg"
    polygons.write_bytes(b"the caller's own file")
    with SegmenterClient(address) as client:
        with pytest.raises(AlreadyExists, match="overwrite"):
            client.predict_raster(str(scene_tif), model="tiny", vector_uri=str(polygons))
        assert polygons.read_bytes() == b"the caller's own file"
        result = client.predict_raster(str(scene_tif), model="tiny", vector_uri=str(polygons), overwrite=True)
    assert result.vector_features == len(_read(polygons)[3]) > 0
