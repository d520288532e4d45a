"""PredictRaster's GeoTIFFs as a GIS sees them: nodata in means nodata out (all-nodata tiles not run), class
names next to the colours, cloud-optimised layout with overviews, an opt-in overwrite, and a confidence band
that decodes to probabilities from the file itself. Checked with rasterio and GDAL's own gdalinfo."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from dial.inference.tiling import TileGrid
from dial_client import SegmenterClient
from dial_client.errors import AlreadyExists, InvalidArgument
from tests.support.synthetic import make_scene

NODATA_COLS = 400


def _write(path, image, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", height=image.shape[0], width=image.shape[1],
                       count=image.shape[2], dtype=image.dtype.name, crs="EPSG:32633",
                       transform=from_origin(400000.0, 5000000.0, 0.5, 0.5), nodata=nodata) as ds:
        ds.write(np.moveaxis(image, -1, 0))


def _gdalinfo(path) -> dict:
    return json.loads(subprocess.run(["gdalinfo", "-json", str(path)], check=True, capture_output=True,
                                     text=True, timeout=60).stdout)


@pytest.fixture()
def half_nodata(raster_root):
    """A 256x640 scene whose first 400 columns are nodata (0 in every band, the declared nodata value)."""
    image = make_scene(256, 640, seed=5).image.copy()
    image[image == 0] = 1  # no stray nodata pixel in the scene itself
    image[:, :NODATA_COLS] = 0
    path = raster_root / "half.tif"
    _write(path, image, nodata=0)
    return path, image


def test_nodata_in_the_source_is_nodata_in_the_class_map_and_empty_tiles_are_not_run(
        segmenter, half_nodata, raster_root, tiny_manifest):
    address, running = segmenter
    path, image = half_nodata
    out = raster_root / "half_classes.tif"
    progress = []
    with SegmenterClient(address) as client:
        result = client.predict_raster(str(path), model="tiny", output_uri=str(out),
                                       on_progress=lambda done, total: progress.append((done, total)))
    with rasterio.open(out) as ds:
        assert ds.nodata == 255 == result.nodata_class
        labels = ds.read(1)
    assert (labels[:, :NODATA_COLS] == 255).all()
    assert (labels[:, NODATA_COLS:] < tiny_manifest.n_classes).all()
    assert _gdalinfo(out)["bands"][0]["noDataValue"] == 255
    grid = TileGrid(256, 640, tiny_manifest.tile_px, tiny_manifest.overlap_px)
    empty = sum(1 for w in grid.windows() if w.col_off + w.width <= NODATA_COLS)
    assert 0 < empty < len(grid) and result.tiles_skipped == empty
    assert progress[-1] == (len(grid), len(grid))
    labels_of = {"model": "tiny", "version": tiny_manifest.version}
    registry = running.metrics.registry
    assert registry.get_sample_value("dial_tiles_skipped_total", labels_of) == empty
    assert registry.get_sample_value("dial_tiles_processed_total", labels_of) == len(grid) - empty


def test_a_source_without_nodata_skips_nothing(segmenter, raster_root):
    address, _ = segmenter
    image = make_scene(160, 200, seed=3).image
    image[:, :100] = 0  # zeros, but no nodata value is declared: they are pixels like any other
    path = raster_root / "plain.tif"
    _write(path, image)
    with SegmenterClient(address) as client:
        result = client.predict_raster(str(path), model="tiny", output_uri=str(raster_root / "plain_classes.tif"))
    with rasterio.open(result.output_uri) as ds:
        assert (ds.read(1) != 255).all()
    assert result.tiles_skipped == 0


def test_the_class_map_is_a_cog_with_overviews_colours_and_class_names(segmenter, half_nodata, raster_root,
                                                                      tiny_manifest):
    address, _ = segmenter
    path, _ = half_nodata
    out = raster_root / "named.tif"
    with SegmenterClient(address) as client:
        client.predict_raster(str(path), model="tiny", output_uri=str(out))
    names = [c.name for c in tiny_manifest.classes]
    info = _gdalinfo(out)
    band = info["bands"][0]
    assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
    assert band["overviews"] and band["block"] == [256, 256]
    assert band["colorInterpretation"] == "Palette"
    assert band["categories"] == names
    rat = info["rat"]
    name_col = next(f["index"] for f in rat["fieldDefn"] if f["name"] == "class_name")
    assert [row["f"][name_col] for row in rat["row"]] == names
    with rasterio.open(out) as ds:
        assert ds.overviews(1)
        colour = tiny_manifest.classes[1].colour
        assert ds.colormap(1)[1][:3] == tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    # Only the file and its sidecar: no staging file is left beside them.
    assert sorted(p.name for p in raster_root.iterdir()) == ["half.tif", "named.qml", "named.tif", "named.tif.aux.xml"]


def test_overwriting_an_output_is_opt_in(segmenter, half_nodata, raster_root):
    address, _ = segmenter
    path, _ = half_nodata
    out = raster_root / "taken.tif"
    out.write_bytes(b"someone's file")
    with SegmenterClient(address, retries=0) as client:
        with pytest.raises(AlreadyExists) as refused:
            client.predict_raster(str(path), model="tiny", output_uri=str(out))
        assert "taken.tif" in str(refused.value) and "overwrite" in str(refused.value)
        assert out.read_bytes() == b"someone's file"
        client.predict_raster(str(path), model="tiny", output_uri=str(out), overwrite=True)
    with rasterio.open(out) as ds:
        assert ds.nodata == 255


def test_a_confidence_band_in_the_same_pass_decodes_to_probabilities(segmenter, raster_root, tiny_manifest):
    address, _ = segmenter
    image = make_scene(120, 120, seed=9).image  # one model tile: the same pixels Predict sees
    path = raster_root / "small.tif"
    _write(path, image)
    classes, confidence = raster_root / "small_classes.tif", raster_root / "small_confidence.tif"
    with SegmenterClient(address) as client:
        result = client.predict_raster(str(path), model="tiny", output_uri=str(classes),
                                       confidence_uri=str(confidence))
        plain = client.predict_raster(str(path), model="tiny")
        direct = client.predict(image, model="tiny", return_probabilities=True)
    assert result.confidence_uri == str(confidence)
    with rasterio.open(classes) as ds:
        np.testing.assert_array_equal(ds.read(1), plain.labels)
    info = _gdalinfo(confidence)
    assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
    with rasterio.open(confidence) as ds:
        assert ds.nodata == 255 and ds.scales == (pytest.approx(1 / 254),) and ds.offsets == (0.0,)
        raw = ds.read(1)
        decoded = raw * ds.scales[0] + ds.offsets[0]
    assert (raw <= 254).all()
    assert decoded.min() >= 1 / tiny_manifest.n_classes - 1 / 254 and decoded.max() <= 1.0
    np.testing.assert_allclose(decoded, direct.probabilities.max(axis=0), atol=2 / 254)


def test_a_streamed_array_with_a_nodata_value_is_masked_and_skipped_alike(segmenter, half_nodata, raster_root):
    address, _ = segmenter
    path, image = half_nodata
    with SegmenterClient(address) as client:
        from_file = client.predict_raster(str(path), model="tiny", output_uri=str(raster_root / "f.tif"))
        streamed = client.predict_raster(image, model="tiny", nodata=0, tile_px=200)
        with pytest.raises(InvalidArgument, match="integer from 0 to 255"):
            client.predict_raster(image, model="tiny", nodata=300)
    with rasterio.open(from_file.output_uri) as ds:
        np.testing.assert_array_equal(streamed.labels, ds.read(1))
    assert (streamed.labels[:, :NODATA_COLS] == 255).all()
    assert streamed.tiles_skipped == from_file.tiles_skipped > 0


def test_predict_counts_every_tile_it_runs_not_every_batch(segmenter, tiny_manifest):
    address, running = segmenter
    labels_of = {"model": "tiny", "version": tiny_manifest.version}
    with SegmenterClient(address) as client:
        client.predict(make_scene(300, 300, seed=2).image, model="tiny")
    grid = TileGrid(300, 300, tiny_manifest.tile_px, tiny_manifest.overlap_px)
    assert running.metrics.registry.get_sample_value("dial_tiles_processed_total", labels_of) == len(grid) > 1
