"""Vector output: polygons from hand-made class maps, GeoJSON (RFC 7946) and GeoPackage files, ``dial vectorize``."""
from __future__ import annotations

import json

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import rasterio
import rasterio.features
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
import shapely
from shapely.geometry import shape

from dial.imagery.georef import GeoReference
from dial.imagery.vector import (VectorError, feature_batches, features, vectorize, vectorize_file,
                                 write_batches)

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


def read_layer(path) -> list[tuple[int, str, object]]:
    """``(class_id, class_name, shapely polygon)`` of every feature in a vector file, as GDAL reads it."""
    _, _, geometry, (class_ids, class_names) = pyogrio.raw.read(path, columns=["class_id", "class_name"])
    return list(zip(class_ids.tolist(), class_names.tolist(), shapely.from_wkb(geometry)))


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
    assert pyogrio.read_info(out)["crs"] == "EPSG:32633"
    records = read_layer(out)
    got = sorted((class_id, round(g.area, 6), g.wkt) for class_id, _, g in records)
    names = {class_id: name for class_id, name, _ in records}
    assert got == expected
    assert names == {0: "Building", 1: "Road", 2: "Water"}
    # a second run replaces the file instead of adding a layer
    assert vectorize_file(src, out, NAMES) == 4
    assert [name for name, _ in pyogrio.list_layers(out)] == ["map"]


def test_cli_takes_names_from_a_manifest_a_list_or_the_geotiffs_categories(tmp_path, capsys):
    from dial_services.cli import main

    src = tmp_path / "map.tif"
    write_class_map(src, scene())
    out = tmp_path / "a.gpkg"
    assert main(["vectorize", str(src), str(out), "--classes", "x,y,z", "--simplify", "0.5"]) == 0
    assert json.loads(capsys.readouterr().out) == {"output": str(out), "features": 4}
    assert {name for _, name, _ in read_layer(out)} == {"x", "y", "z"}
    # GDAL keeps a GeoTIFF's category names in its .aux.xml, as QGIS and gdal_edit write them
    (tmp_path / "map.tif.aux.xml").write_text(
        '<PAMDataset><PAMRasterBand band="1"><CategoryNames><Category>Soil</Category><Category>Tree</Category>'
        "<Category>Lake</Category></CategoryNames></PAMRasterBand></PAMDataset>")
    assert main(["vectorize", str(src), str(out)]) == 0
    assert {name for _, name, _ in read_layer(out)} == {"Soil", "Tree", "Lake"}


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


def gdal_regions(m: np.ndarray, skip=(255,)) -> list[tuple[int, object]]:
    """GDAL's own polygons of a whole class map (rasterio.features.shapes), the reference the tracer must match."""
    return [(int(value), shape(g)) for g, value in rasterio.features.shapes(m, connectivity=4, transform=TRANSFORM)
            if int(value) not in skip]


@pytest.mark.parametrize("strip_px", [10**9, 8 * 1, 8 * 3, 8 * 5, 8 * 7])
def test_regions_are_gdals_polygons_whole_or_traced_in_strips(strip_px):
    rng = np.random.default_rng(3)
    m = (rng.random((30, 8)) < 0.45).astype(np.uint8) + (rng.random((30, 8)) < 0.2).astype(np.uint8)
    m[10:20, 1:7] = 2
    m[13:16, 3:5] = 0      # a hole that strip edges cut through
    m[25, :] = 255
    reference = gdal_regions(m)
    traced = [(f.class_id, shape(f.geometry)) for f in features(m, GEO, strip_px=strip_px)]
    assert len(traced) == len(reference) > 20
    assert all(g.is_valid and g.geom_type == "Polygon" for _, g in traced)
    for class_id, target in reference:
        matches = [g for c, g in traced if c == class_id and g.equals(target)]
        assert len(matches) == 1, (class_id, target.wkt)
        # no vertex left where an outline runs straight, across a seam or not
        assert shapely.get_num_coordinates(matches[0]) == shapely.get_num_coordinates(target)
    assert any(len(g.interiors) for _, g in traced)
    assert shapely.union_all([g for _, g in traced]).area == pytest.approx((m != 255).sum() * PIXEL_M**2)


def test_random_maps_match_gdal_in_any_strips():
    rng = np.random.default_rng(11)
    for _ in range(40):
        h, w = rng.integers(1, 25, 2)
        m = rng.integers(0, rng.integers(1, 5), (h, w)).astype(np.uint8)
        m[rng.random((h, w)) < 0.1] = 255
        reference = sorted((c, g.area, shapely.get_num_coordinates(g)) for c, g in gdal_regions(m))
        for strip_px in (10**9, int(w), int(w) * 2):
            traced = [(f.class_id, shape(f.geometry)) for f in features(m, GEO, strip_px=strip_px)]
            assert all(g.is_valid for _, g in traced)
            assert sorted((c, g.area, shapely.get_num_coordinates(g)) for c, g in traced) == reference


def test_a_region_crossing_many_strips_is_one_feature_with_its_area_and_holes():
    m = np.zeros((30, 10), np.uint8)
    m[2:28, 1:9] = 1       # a frame of class 1 ...
    m[5:25, 3:7] = 2       # ... around a block of class 2 ...
    m[10:12, 4:6] = 0      # ... with a hole of class 0
    found = list(features(m, GEO, NAMES, strip_px=10 * 2))  # strips of two rows: 14 seams
    by_class = {}
    for f in found:
        by_class.setdefault(f.class_id, []).append(shape(f.geometry))
    assert sorted((c, len(g)) for c, g in by_class.items()) == [(0, 2), (1, 1), (2, 1)]
    frame, block = by_class[1][0], by_class[2][0]
    assert frame.area == pytest.approx((26 * 8 - 20 * 4) * PIXEL_M**2)
    assert len(frame.interiors) == 1 and len(frame.exterior.coords) == 5  # a rectangle: the seams left no vertex
    assert block.area == pytest.approx((20 * 4 - 4) * PIXEL_M**2) and len(block.interiors) == 1
    assert shape({"type": "Polygon", "coordinates": [block.interiors[0].coords]}).area == pytest.approx(
        4 * PIXEL_M**2)
    assert frame.bounds == (ORIGIN[0] + 1 * PIXEL_M, ORIGIN[1] - 28 * PIXEL_M,
                            ORIGIN[0] + 9 * PIXEL_M, ORIGIN[1] - 2 * PIXEL_M)


@pytest.mark.parametrize("strip_px", [10**9, 5])
def test_a_ring_closed_at_a_corner_keeps_its_hole_as_a_valid_polygon(strip_px):
    m = np.zeros((5, 5), np.uint8)
    m[1, 1:4] = 1
    m[2, 1] = m[2, 3] = 1
    m[3, 1:3] = 1          # (2, 3) and (3, 2) meet at a corner only; the ring closes round (2, 2) there
    found = [(f.class_id, shape(f.geometry)) for f in features(m, GEO, strip_px=strip_px)]
    ring = [g for c, g in found if c == 1]
    assert len(ring) == 1 and ring[0].is_valid
    assert ring[0].area == pytest.approx(7 * PIXEL_M**2) and len(ring[0].interiors) == 1
    assert sorted(g.area for c, g in found if c == 0) == pytest.approx([PIXEL_M**2, 17 * PIXEL_M**2])


def test_memory_follows_the_strip_not_the_map():
    import tracemalloc

    def peak(height: int) -> int:
        m = np.random.default_rng(0).integers(0, 3, (height, 100)).astype(np.uint8)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        count = sum(len(polygons) for polygons, _ in feature_batches(m, GEO, strip_px=100 * 20))
        used = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        assert count > height * 100 / 4
        return used

    assert peak(1000) < 1.5 * peak(100)


def test_a_map_with_no_regions_writes_an_empty_layer_and_a_missing_folder_is_refused(tmp_path):
    for name in ("empty.gpkg", "empty.geojson"):
        assert vectorize(np.full((5, 5), 255, np.uint8), GEO, tmp_path / name, NAMES) == 0
    assert pyogrio.read_info(tmp_path / "empty.gpkg")["fields"].tolist() == ["class_id", "class_name"]
    assert json.loads((tmp_path / "empty.geojson").read_text())["features"] == []
    with pytest.raises(VectorError, match="no such folder"):
        vectorize(scene(), GEO, tmp_path / "missing" / "map.gpkg")


def test_a_failed_write_leaves_the_previous_file(tmp_path):
    out = tmp_path / "map.gpkg"
    assert write_batches(feature_batches(scene(), GEO), out, GEO.crs) == 4

    def failing():
        yield from feature_batches(np.ones((4, 4), np.uint8), GEO)
        raise OSError("the disk is full")

    with pytest.raises(OSError, match="full"):
        write_batches(failing(), out, GEO.crs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.gpkg"]
    assert len(read_layer(out)) == 4


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
