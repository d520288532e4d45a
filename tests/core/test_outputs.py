"""Output GeoTIFFs in the core: the COG writer publishes whole or not at all, refuses to replace unless asked,
never leaves an old class map's names beside new pixels; the tiler leaves out tiles a caller says hold no data."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio

from dial.files import atomic_path
from dial.imagery.georef import GeoReference
from dial.imagery.outputs import Category, CogWriter, sidecar_path, style_path
from dial.inference.classwise import confidence_from_logits
from dial.inference.predictors import softmax
from dial.inference.tiling import TileGrid, iter_blended_rows

GEO = GeoReference("EPSG:32633", (0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0))
CLASSES = [Category("Background", "#000000"), Category("Building", "#ff0000")]


def _write(path, **options):
    with CogWriter(path, height=300, width=300, geo=GEO, **options) as writer:
        writer.write(np.ones((300, 300), np.uint8), 0, 0)


def test_a_failed_write_leaves_nothing_and_an_existing_file_is_kept_unless_overwrite(tmp_path):
    target = tmp_path / "map.tif"
    with pytest.raises(RuntimeError):
        with CogWriter(target, height=300, width=300, geo=GEO) as writer:
            writer.write(np.ones((100, 300), np.uint8), 0, 0)
            raise RuntimeError("the model failed")
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        _write(target)
    assert target.read_bytes() == b"keep" and list(tmp_path.iterdir()) == [target]
    _write(target, overwrite=True)
    with rasterio.open(target) as ds:
        assert (ds.read(1) == 1).all() and ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


def test_a_map_without_classes_removes_the_old_maps_class_names(tmp_path):
    target = tmp_path / "map.tif"
    _write(target, categories=CLASSES)
    assert "<Category>Building</Category>" in sidecar_path(target).read_text()
    assert 'label="Building"' in style_path(target).read_text()
    _write(target, overwrite=True, scale_offset=(0.5, 1.0))
    assert not sidecar_path(target).exists() and not style_path(target).exists()
    with rasterio.open(target) as ds:
        assert ds.scales == (0.5,) and ds.offsets == (1.0,)


def test_a_class_map_is_refused_beside_a_style_it_would_replace_unless_overwrite(tmp_path):
    target = tmp_path / "map.tif"
    style_path(target).write_text("the user's own style")
    with pytest.raises(FileExistsError):
        _write(target, categories=CLASSES)
    assert style_path(target).read_text() == "the user's own style" and not target.exists()
    _write(target, scale_offset=(0.5, 1.0))  # a map without classes writes no style: it leaves this one be
    assert style_path(target).read_text() == "the user's own style"


def test_atomic_path_without_overwrite_refuses_a_file_made_meanwhile(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(FileExistsError):
        with atomic_path(target, overwrite=False) as tmp:
            tmp.write_bytes(b"new")
            target.write_bytes(b"theirs")  # another writer, while this one ran
    assert target.read_bytes() == b"theirs" and list(tmp_path.iterdir()) == [target]


def test_confidence_is_the_softmax_maximum():
    logits = np.random.default_rng(0).normal(size=(4, 8, 9)).astype(np.float32) * 3
    confidence, labels = confidence_from_logits(logits)
    np.testing.assert_allclose(confidence, softmax(logits, axis=0).max(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(labels, logits.argmax(axis=0))


class CountingPredictor:
    """Class 1 everywhere, counting the tiles it is asked to run."""

    def __init__(self, manifest):
        self.manifest = manifest
        self.tiles = 0

    def logits(self, batch):
        self.tiles += batch.shape[0]
        out = np.zeros((batch.shape[0], self.manifest.n_classes) + batch.shape[2:], dtype=np.float32)
        out[:, 1] = 2.0
        return out


@pytest.mark.parametrize("output", ["labels", "probabilities"])
def test_tiles_said_to_hold_no_data_are_not_run(tiny_manifest, output):
    height, width, empty_cols = 256, 640, 400
    image = np.full((height, width, len(tiny_manifest.bands)), 100, np.uint8)
    predictor = CountingPredictor(tiny_manifest)
    skipped = []
    rows = iter_blended_rows(predictor, lambda r, c, h, w: image[r : r + h, c : c + w], height, width,
                             output=output, skip_tile=lambda r, c, h, w: c + w <= empty_cols,
                             on_skipped=skipped.append)
    blocks = np.concatenate([block if output == "labels" else block.argmax(axis=0) for _, _, block in rows])
    grid = TileGrid(height, width, tiny_manifest.tile_px, tiny_manifest.overlap_px)
    empty = sum(1 for w in grid.windows() if w.col_off + w.width <= empty_cols)
    assert 0 < empty < len(grid)
    assert sum(skipped) == empty and predictor.tiles == len(grid) - empty
    assert blocks.shape == (height, width)
    # Pixels a run tile covers are its class; pixels only skipped tiles cover are plain zeros, never NaN.
    assert (blocks[:, empty_cols:] == 1).all()
