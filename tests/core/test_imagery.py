"""Readers on every format present in the shared data, plus synthetic GeoTIFFs."""

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from dial.imagery.dataset import Dataset, split_names
from dial.imagery.legend import IGNORE_INDEX, Legend
from dial.imagery.raster import GeoTiffWriter, RasterReader
from dial.imagery.readers import ImageFormatError, read_image, read_mask
from tests.support.paths import SHARED_DATA

DUBAI = SHARED_DATA / "dubai-landcover-hitl"
INRIA = SHARED_DATA / "inria-aerial"
SPACENET = SHARED_DATA / "spacenet"


@pytest.mark.parametrize("path, shape, dtype", [
    (DUBAI / "images/tile1_image_part_001.jpg", (644, 797, 3), np.uint8),              # JPEG
    (INRIA / "images/austin1_10.tif", (256, 256, 3), np.uint8),                         # TIFF (LZW)
    (INRIA / "images/austin3_45.png", (256, 256, 3), np.uint8),                         # PNG
    (SPACENET / "images/RGB-PanSharpen_AOI_3_Paris_img418.png", (650, 650, 3), np.uint8),  # RGBA: alpha dropped
    (SPACENET / "images/road_mask_input.tif", (1300, 1300, 1), np.uint16),              # 1-band uint16 GeoTIFF
])
def test_read_image_formats(path, shape, dtype):
    image, geo = read_image(path)
    assert image.shape == shape and image.dtype == dtype
    assert image.max() > 0


def test_geotiff_keeps_its_crs():
    _, geo = read_image(SPACENET / "images/road_mask_input.tif")
    assert geo.crs == "EPSG:4326"
    assert geo.transform[2] == pytest.approx(-115.2338076)


def test_colour_mask_with_legend():
    legend = Legend.load(DUBAI / "legend.json")
    mask = read_mask(DUBAI / "masks/tile1_image_part_001.png", legend)
    values, counts = np.unique(mask, return_counts=True)
    share = dict(zip(values.tolist(), (counts / mask.size).tolist()))
    assert share[legend.index_of("Land")] == pytest.approx(0.757, abs=0.01)  # PROVENANCE: Land 75.7%
    assert set(values.tolist()) <= set(range(6)) | {IGNORE_INDEX}


def test_palette_mask_is_expanded_before_lookup():
    legend = Legend.load(DUBAI / "legend.json")
    with rasterio.open(DUBAI / "masks/tile2_image_part_003.png") as ds:
        assert ds.count == 1 and ds.colorinterp[0].name == "palette"
    mask = read_mask(DUBAI / "masks/tile2_image_part_003.png", legend)
    share = (mask == legend.index_of("Land")).mean()
    assert share == pytest.approx(0.736, abs=0.01)  # PROVENANCE: Land 73.6%


@pytest.mark.parametrize("path, fg", [
    (INRIA / "masks/austin1_10.tif", 0.160),                                   # 1-band value mask 0/255
    (INRIA / "masks/austin3_45.png", 0.254),                                   # RGB-grey PNG
    (SPACENET / "masks/RGB-PanSharpen_AOI_4_Shanghai_img945.png", 0.298),      # RGBA grey
    (SPACENET / "masks/road_mask_input.tif", 0.033),                           # GeoTIFF mask
])
def test_binary_value_masks(path, fg):
    mask = read_mask(path, Legend.binary("building"))
    assert set(np.unique(mask).tolist()) <= {0, 1}
    assert mask.mean() == pytest.approx(fg, abs=0.005)


def test_unannotated_black_becomes_ignore(tmp_path):
    legend = Legend.load(DUBAI / "legend.json")
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:2] = legend.classes[0].colour
    path = tmp_path / "m.png"
    from PIL import Image

    Image.fromarray(rgb).save(path)
    mask = read_mask(path, legend)
    assert (mask[:2] == 0).all() and (mask[2:] == IGNORE_INDEX).all()


def test_unknown_colours_are_an_error(tmp_path):
    from PIL import Image

    path = tmp_path / "m.png"
    Image.fromarray(np.tile(np.array([7, 8, 9], np.uint8), (4, 4, 1))).save(path)
    with pytest.raises(ImageFormatError, match="not in the legend"):
        read_mask(path, Legend.load(DUBAI / "legend.json"))


def test_value_mask_with_ignore_value(tmp_path):
    from PIL import Image

    values = np.array([[0, 1, 2], [9, 9, 1]], np.uint8)
    path = tmp_path / "v.png"
    Image.fromarray(values).save(path)
    legend = Legend(classes=Legend.load(DUBAI / "legend.json").classes[:3])
    mask = read_mask(path, legend, ignore_value=9)
    assert mask.tolist() == [[0, 1, 2], [IGNORE_INDEX, IGNORE_INDEX, 1]]
    with pytest.raises(ImageFormatError):
        read_mask(path, legend)  # 9 is no class of a 3-class legend


def test_dataset_binary_view_keeps_ignore():
    ds = Dataset.open(DUBAI, binary="Building")
    assert ds.class_names == ("not Building", "Building")
    sample = next(s for s in ds.samples if s.name == "tile1_image_part_006")
    image, mask = ds.read(sample)
    assert image.shape[:2] == mask.shape
    assert set(np.unique(mask).tolist()) <= {0, 1, IGNORE_INDEX}
    assert mask[mask != IGNORE_INDEX].mean() == pytest.approx(0.076, abs=0.01)  # Building 7.6%


def test_every_shared_pair_reads():
    for root in (DUBAI, INRIA, SPACENET):
        ds = Dataset.open(root)
        for sample in ds.samples[:: max(1, len(ds) // 4)]:
            image, mask = ds.read(sample)
            assert image.shape[:2] == mask.shape


def test_split_is_deterministic_stratified_and_disjoint():
    names = [f"tile{t}_part_{i}" for t in range(4) for i in range(6)]
    train, val = split_names(names, 0.25, seed=3)
    assert split_names(list(reversed(names)), 0.25, seed=3) == (train, val)
    assert not set(train) & set(val) and len(train) + len(val) == len(names)
    for t in range(4):
        assert sum(n.startswith(f"tile{t}_") for n in val) == 2  # round(6 * 0.25) per group


def test_windowed_geotiff_write_keeps_crs_and_transform(tmp_path):
    transform = from_origin(500000.0, 4200000.0, 0.5, 0.5)
    src = tmp_path / "src.tif"
    data = np.random.default_rng(0).integers(0, 4000, (300, 200, 4), dtype=np.uint16)
    with rasterio.open(src, "w", driver="GTiff", height=300, width=200, count=4, dtype="uint16",
                       crs="EPSG:32633", transform=transform) as ds:
        ds.write(np.moveaxis(data, -1, 0))
    with RasterReader(src) as reader:
        assert reader.info.bands == 4 and reader.info.geo.crs == "EPSG:32633"
        np.testing.assert_array_equal(reader.read(10, 20, 50, 60), data[10:60, 20:80])
        out = tmp_path / "out.tif"
        with GeoTiffWriter(out, height=300, width=200, bands=1, dtype="uint8", geo=reader.info.geo) as writer:
            writer.write(np.full((150, 200), 1, np.uint8), 0, 0)
            writer.write(np.full((150, 200), 2, np.uint8), 150, 0)
    with rasterio.open(out) as ds:
        assert ds.crs.to_string() == "EPSG:32633" and ds.transform == transform
        labels = ds.read(1)
    assert (labels[:150] == 1).all() and (labels[150:] == 2).all()


def test_a_window_read_on_its_own_carries_its_own_georeference(tmp_path):
    transform = from_origin(500000.0, 4200000.0, 0.5, 0.5)
    src = tmp_path / "src.tif"
    data = np.random.default_rng(1).integers(0, 255, (60, 50, 3), dtype=np.uint8)
    with rasterio.open(src, "w", driver="GTiff", height=60, width=50, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=transform) as ds:
        ds.write(np.moveaxis(data, -1, 0))
    with RasterReader(src) as reader:
        part = reader.read_window((8, 16, 20, 30))
        np.testing.assert_array_equal(part.image, data[8:28, 16:46])
        assert part.window == (8, 16, 20, 30) and part.geo.crs == "EPSG:32633"
        assert part.geo.transform == (0.5, 0.0, 500000.0 + 16 * 0.5, 0.0, -0.5, 4200000.0 - 8 * 0.5)
        whole = reader.read_window()
        assert whole.window == (0, 0, 60, 50) and whole.geo == reader.info.geo
        for outside in [(50, 0, 20, 10), (0, 0, 0, 10), (0, 45, 10, 10)]:
            with pytest.raises(ValueError, match=r"inside the 60 × 50 \(height × width\) raster"):
                reader.read_window(outside)
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", height=8, width=8, count=1, dtype="uint8") as ds:
        ds.write(np.zeros((1, 8, 8), np.uint8))
    with RasterReader(plain) as reader:
        assert reader.info.geo is None and reader.read_window((0, 0, 4, 4)).geo is None
