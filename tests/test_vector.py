"""Vector output: polygons from hand-made class maps, GeoJSON (RFC 7946) and GeoPackage files, ``dial vectorize``."""
from __future__ import annotations

import json

import fiona
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
from shapely.geometry import shape

from dial.imagery.georef import GeoReference
from dial.imagery.vector import VectorError, features, vectorize, vectorize_file

PIXEL_M = 2.0
ORIGIN = (500000.0, 4000000.0)
TRANSFORM = from_origin(*ORIGIN, PIXEL_M, PIXEL_M)
GEO = GeoReference("EPSG:32633", tuple(TRANSFORM)[:6])
NAMES = ("Building", "Road", "Water")


def scene() -> np.ndarray:
    """Class 1 is a 4x4 ring around a 1-pixel hole of class 0; class 2 is a strip touching class 0; one ignored pixel."""
    m = np.zeros((6, 8), np.uint8)
    m[1:5, 1:5] = 1
    m[2, 2] = 0          # the hole
    m[:, 6:] = 2         # touches class 0 along column 6
    m[0, 0] = 255        # ignored
    return m


def signed_area(ring) -> float:
    x, y = np.asarray(ring, dtype=float).T
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def test_one_feature_per_region_with_holes_and_areas_in_map_units():
    found = list(features(scene(), GEO, NAMES))
    by_class = {}
    for f in found:
        by_class.setdefault(f.class_id, []).append(f)
    # class 0: the background around the ring and the single-pixel hole are two regions
    assert sorted(by_class) == [0, 1, 2]
    assert len(by_class[0]) == 2 and len(by_class[1]) == 1 and len(by_class[2]) == 1
    ring = shape(by_class[1][0].geometry)
    assert by_class[1][0].class_name == "Road"
    assert len(ring.interiors) == 1
    assert ring.area == pytest.approx(15 * PIXEL_M**2)
    assert shape({"type": "Polygon", "coordinates": [ring.interiors[0].coords]}).area == pytest.approx(PIXEL_M**2)
    # the hole is filled by its own class-0 feature, exactly where the ring's hole is
    hole = min(by_class[0], key=lambda f: shape(f.geometry).area)
    assert shape(hole.geometry).equals(shape({"type": "Polygon", "coordinates": [ring.interiors[0].coords]}))
    assert shape(hole.geometry).bounds == (ORIGIN[0] + 2 * PIXEL_M, ORIGIN[1] - 3 * PIXEL_M,
                                           ORIGIN[0] + 3 * PIXEL_M, ORIGIN[1] - 2 * PIXEL_M)
    assert shape(by_class[2][0].geometry).area == pytest.approx(12 * PIXEL_M**2)
    # touching classes share edges exactly: no overlap, no gap, the ignored pixel left out
    total = sum(shape(f.geometry).area for f in found)
    assert total == pytest.approx((scene() != 255).sum() * PIXEL_M**2)
    background = shape(max(by_class[0], key=lambda f: shape(f.geometry).area).geometry)
    assert background.intersection(shape(by_class[2][0].geometry)).length == pytest.approx(6 * PIXEL_M)
    assert background.intersection(shape(by_class[2][0].geometry)).area == 0


def test_nodata_and_ignore_make_no_feature_and_diagonals_are_separate_regions():
    m = np.full((4, 4), 7, np.uint8)
    m[0, 0] = m[1, 1] = 3  # touch at a corner only
    m[3, 3] = 255
    found = list(features(m, GEO, nodata=7))
    assert [f.class_id for f in found] == [3, 3]
    assert all(shape(f.geometry).area == pytest.approx(PIXEL_M**2) for f in found)
    assert {f.class_name for f in found} == {"class_3"}


def test_simplify_in_map_units_keeps_holes_and_cuts_vertices():
    m = np.zeros((40, 40), np.uint8)
    rows, cols = np.mgrid[:40, :40]
    m[(rows - 20) ** 2 + (cols - 20) ** 2 < 15**2] = 1  # a pixelated disc
    m[18:22, 18:22] = 0                                  # with a hole
    exact = [f for f in features(m, GEO) if f.class_id == 1][0]
    simple = [f for f in features(m, GEO, simplify=1.5 * PIXEL_M) if f.class_id == 1][0]
    exact_shape, simple_shape = shape(exact.geometry), shape(simple.geometry)
    assert len(simple_shape.exterior.coords) < len(exact_shape.exterior.coords) / 2
    assert len(simple_shape.interiors) == 1 and simple_shape.is_valid
    assert simple_shape.area == pytest.approx(exact_shape.area, rel=0.03)
    # within the tolerance of the exact outline
    assert exact_shape.hausdorff_distance(simple_shape) <= 1.5 * PIXEL_M + 1e-6
    with pytest.raises(VectorError, match="map units"):
        list(features(m, GEO, simplify=-1))


def test_geojson_follows_rfc_7946(tmp_path):
    out = tmp_path / "map.geojson"
    assert vectorize(scene(), GEO, out, NAMES) == 4
    doc = json.loads(out.read_text())
    assert doc["type"] == "FeatureCollection" and "crs" not in doc  # RFC 7946 §4: WGS 84, no crs member
    north_east = (ORIGIN[0] + 8 * PIXEL_M, ORIGIN[1])  # a corner of the class-2 strip
    lons, lats = warp_transform("EPSG:32633", "EPSG:4326", [north_east[0]], [north_east[1]])
    first_positions = []
    for f in doc["features"]:
        assert f["type"] == "Feature" and f["geometry"]["type"] == "Polygon"
        assert set(f["properties"]) == {"class_id", "class_name"}
        assert f["properties"]["class_name"] == NAMES[f["properties"]["class_id"]]
        rings = f["geometry"]["coordinates"]
        for i, ring in enumerate(rings):
            assert len(ring) >= 4 and ring[0] == ring[-1]
            assert all(len(p) == 2 and -180 <= p[0] <= 180 and -90 <= p[1] <= 90 for p in ring)
            # right-hand rule (§3.1.6): exterior counter-clockwise, holes clockwise
            assert (signed_area(ring) > 0) == (i == 0)
        first_positions.extend(rings[0])
    # longitude first: the class map's north-east corner is a vertex, at (lon, lat)
    nearest = min(first_positions, key=lambda p: (p[0] - lons[0]) ** 2 + (p[1] - lats[0]) ** 2)
    assert nearest == pytest.approx([lons[0], lats[0]], abs=1e-6)
    assert 14.9 < nearest[0] < 15.1 and 36.0 < nearest[1] < 36.3  # UTM 33N at 500 km E is 15° E


def test_geojson_needs_a_crs(tmp_path):
    with pytest.raises(VectorError, match="GeoPackage"):
        vectorize(scene(), GeoReference(None, (1, 0, 0, 0, 1, 0)), tmp_path / "map.geojson")


def write_class_map(path, m, crs="EPSG:32633", nodata=None):
    with rasterio.open(path, "w", driver="GTiff", height=m.shape[0], width=m.shape[1], count=1, dtype="uint8",
                       crs=crs, transform=TRANSFORM, nodata=nodata) as ds:
        ds.write(m, 1)


def test_geopackage_reads_back_with_the_same_features_and_crs(tmp_path):
    src = tmp_path / "map.tif"
    write_class_map(src, scene())
    out = tmp_path / "map.gpkg"
    assert vectorize_file(src, out, NAMES) == 4
    expected = sorted((f.class_id, round(shape(f.geometry).area, 6), shape(f.geometry).wkt)
                      for f in features(scene(), GEO, NAMES))
    with fiona.open(out) as layer:
        assert layer.crs.to_epsg() == 32633
        got = sorted((r.properties["class_id"], round(shape(r.geometry).area, 6), shape(r.geometry).wkt)
                     for r in layer)
        names = {r.properties["class_id"]: r.properties["class_name"] for r in layer}
    assert got == expected
    assert names == {0: "Building", 1: "Road", 2: "Water"}
    # a second run replaces the file instead of adding a layer
    assert vectorize_file(src, out, NAMES) == 4
    assert fiona.listlayers(out) == ["map"]


def test_cli_takes_names_from_a_manifest_a_list_or_the_geotiffs_categories(tmp_path, capsys):
    from dial_services.cli import main

    src = tmp_path / "map.tif"
    write_class_map(src, scene())
    out = tmp_path / "a.gpkg"
    assert main(["vectorize", str(src), str(out), "--classes", "x,y,z", "--simplify", "0.5"]) == 0
    assert json.loads(capsys.readouterr().out) == {"output": str(out), "features": 4}
    with fiona.open(out) as layer:
        assert {r.properties["class_name"] for r in layer} == {"x", "y", "z"}
    # GDAL keeps a GeoTIFF's category names in its .aux.xml, as QGIS and gdal_edit write them
    (tmp_path / "map.tif.aux.xml").write_text(
        '<PAMDataset><PAMRasterBand band="1"><CategoryNames><Category>Soil</Category><Category>Tree</Category>'
        "<Category>Lake</Category></CategoryNames></PAMRasterBand></PAMDataset>")
    assert main(["vectorize", str(src), str(out)]) == 0
    with fiona.open(out) as layer:
        assert {r.properties["class_name"] for r in layer} == {"Soil", "Tree", "Lake"}


def test_cli_names_from_a_model_manifest(tmp_path, tiny_repo, tiny_manifest, capsys):
    from dial_services.cli import main

    src = tmp_path / "map.tif"
    write_class_map(src, scene())
    out = tmp_path / "b.geojson"
    assert main(["vectorize", str(src), str(out), "--classes", "tiny", "--model-repo", str(tiny_repo)]) == 0
    doc = json.loads(out.read_text())
    assert {f["properties"]["class_name"] for f in doc["features"]} == set(tiny_manifest.class_names[:3])
    assert main(["vectorize", str(src), str(out), "--classes", str(tiny_repo / "tiny" / "1" / "manifest.json")]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (["OUT.shp"], "use .gpkg or .geojson"),
    (["OUT.gpkg", "--classes", "nosuchmodel"], "nosuchmodel"),
])
def test_cli_errors_are_one_line_the_user_can_act_on(tmp_path, capsys, args, message):
    from dial_services.cli import main

    src = tmp_path / "map.tif"
    write_class_map(src, scene())
    argv = ["vectorize", str(src), str(tmp_path / args[0]), *args[1:], "--model-repo", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("strip_px", [8 * 3, 8 * 5, 8 * 7])
def test_regions_crossing_strips_are_joined_into_the_same_features(monkeypatch, strip_px):
    import shapely

    import dial.imagery.vector as vector

    rng = np.random.default_rng(3)
    m = (rng.random((30, 8)) < 0.45).astype(np.uint8) + (rng.random((30, 8)) < 0.2).astype(np.uint8)
    m[10:20, 1:7] = 2
    m[13:16, 3:5] = 0      # a hole that strip edges cut through
    m[25, :] = 255
    whole = [(f.class_id, shape(f.geometry)) for f in features(m, GEO)]
    monkeypatch.setattr(vector, "STRIP_PX", strip_px)  # strips of 3, 5 and 7 rows of 8 pixels
    strips = [(f.class_id, shape(f.geometry)) for f in features(m, GEO)]
    assert len(strips) == len(whole) > 20
    assert all(g.is_valid and g.geom_type == "Polygon" for _, g in strips)
    for class_id, target in whole:
        matches = [g for c, g in strips if c == class_id and g.equals(target)]
        assert len(matches) == 1, (class_id, target.wkt)
    assert any(len(g.interiors) for _, g in strips)
    assert shapely.union_all([g for _, g in strips]).area == pytest.approx((m != 255).sum() * PIXEL_M**2)


def test_a_class_map_that_refers_to_another_file_is_refused(tmp_path):
    """dial vectorize reads through the guarded opener: a VRT named .tif never pulls in its source."""
    from dial.imagery.opener import ImageFormatError

    source = tmp_path / "outside.tif"
    with rasterio.open(source, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as ds:
        ds.write(np.ones((1, 4, 4), dtype=np.uint8))
    disguised = tmp_path / "map.tif"
    disguised.write_text(
        '<VRTDataset rasterXSize="4" rasterYSize="4"><VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{source}</SourceFilename><SourceBand>1</SourceBand></SimpleSource>'
        '</VRTRasterBand></VRTDataset>')
    with rasterio.open(disguised) as plain:  # plain GDAL follows the reference
        assert plain.read(1).sum() == 16
    with pytest.raises(ImageFormatError):
        vectorize_file(disguised, tmp_path / "out.gpkg", ["a", "b"])
    assert not (tmp_path / "out.gpkg").exists()
