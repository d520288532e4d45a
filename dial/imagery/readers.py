"""Read images and label masks from GeoTIFF, TIFF, PNG and JPEG files.

Everything goes through rasterio (GDAL), so one code path handles plain
images and georeferenced rasters alike, and through the one guarded opener
(``dial.imagery.opener``), so a file can only ever be one of these formats
and never pulls in another file or a URL. Masks come in four encodings that
users really bring: value masks (class ids, or 0/255 for binary), RGB masks
whose channels are equal ("RGB-grey"), colour masks looked up in a legend,
and palette PNGs, which are expanded to colours before the lookup.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio.enums import ColorInterp

from dial.imagery.georef import GeoReference
from dial.imagery.legend import IGNORE_INDEX, Legend
from dial.imagery.opener import IMAGES, ImageFormatError, reading

SUPPORTED_DTYPES = ("uint8", "uint16")
# A colour mask may carry a few stray colours (resampling, anti-aliasing). They
# become "ignore"; more than this share means the legend is wrong, not the mask.
MAX_UNKNOWN_COLOUR_SHARE = 0.01


def georeference(dataset) -> GeoReference | None:
    """Where an opened dataset lies on the map; None for a plain image (no CRS, identity transform)."""
    t = dataset.transform
    geo = GeoReference(dataset.crs.to_string() if dataset.crs else None, (t.a, t.b, t.c, t.d, t.e, t.f))
    return geo if geo.is_georeferenced else None


def image_band_indexes(dataset, any_count: bool = False) -> list[int]:
    """1-based band indexes to use as image bands: alpha is dropped. Images have 1, 3 or 4 of them; with
    ``any_count``, any number (a multispectral raster whose bands a mapping then chooses)."""
    bands = [i + 1 for i, ci in enumerate(dataset.colorinterp) if ci != ColorInterp.alpha]
    if not bands or (not any_count and len(bands) not in (1, 3, 4)):
        raise ImageFormatError(f"{len(bands)} bands; DIAL reads 1, 3 or 4 band images", path=dataset.name)
    return bands


def read_image(path: str | Path) -> tuple[np.ndarray, GeoReference | None]:
    """Read an image as ``(H, W, B)`` in its native uint8/uint16 dtype, and its georeference if it has one."""
    with reading(path, IMAGES) as ds:
        dtype = ds.dtypes[0]
        if dtype not in SUPPORTED_DTYPES:
            raise ImageFormatError(f"dtype {dtype}; DIAL reads uint8 or uint16 images", path=path)
        bands = image_band_indexes(ds)
        array = ds.read(bands)
        return np.ascontiguousarray(np.moveaxis(array, 0, -1)), georeference(ds)


def _mask_as_rgb_or_values(ds) -> np.ndarray:
    """``(H, W)`` values or ``(H, W, 3)`` colours, palette expanded."""
    if ds.colorinterp[0] == ColorInterp.palette:
        values = ds.read(1)
        lut = np.zeros((256, 3), dtype=np.uint8)
        for index, rgba in ds.colormap(1).items():
            lut[index] = rgba[:3]
        return lut[values]
    bands = [i + 1 for i, ci in enumerate(ds.colorinterp) if ci != ColorInterp.alpha] or [1]
    array = np.moveaxis(ds.read(bands), 0, -1)
    if array.shape[-1] == 1:
        return array[..., 0]
    if array.shape[-1] >= 3 and np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(
        array[..., 0], array[..., 2]
    ):
        return array[..., 0]  # RGB-grey: a value mask stored in colour channels
    return array[..., :3]


def colours_to_classes(rgb: np.ndarray, legend: Legend, source: str = "mask") -> np.ndarray:
    """Map an ``(H, W, 3)`` colour mask to class ids; unannotated colours -> ignore."""
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    out = np.full(packed.shape, IGNORE_INDEX, dtype=np.uint8)
    known = np.zeros(packed.shape, dtype=bool)
    for index, info in enumerate(legend.classes):
        r, g, b = info.colour
        hit = packed == ((r << 16) | (g << 8) | b)
        out[hit] = index
        known |= hit
    for r, g, b in legend.unannotated:
        known |= packed == ((r << 16) | (g << 8) | b)
    unknown_share = 1.0 - known.mean()
    if unknown_share > MAX_UNKNOWN_COLOUR_SHARE:
        raise ImageFormatError(
            f"{source}: {unknown_share:.1%} of pixels have colours not in the legend "
            f"(legend classes: {list(legend.names)})"
        )
    return out


def values_to_classes(values: np.ndarray, n_classes: int, ignore_value: int | None, source: str) -> np.ndarray:
    """Value masks: 0/255 means binary; otherwise values are class ids."""
    uniques = np.unique(values)
    out = np.full(values.shape, IGNORE_INDEX, dtype=np.uint8)
    if ignore_value is not None:
        valid = values != ignore_value
        uniques = uniques[uniques != ignore_value]
    else:
        valid = np.ones(values.shape, dtype=bool)
    if set(uniques.tolist()) <= {0, 255} and n_classes == 2:
        out[valid] = (values[valid] == 255).astype(np.uint8)
        return out
    if uniques.size and (uniques.max() >= n_classes):
        raise ImageFormatError(
            f"{source}: mask values {uniques.tolist()[:10]} exceed the {n_classes} classes; "
            "pass a legend.json for colour masks or set the ignore value"
        )
    out[valid] = values[valid].astype(np.uint8)
    return out


def read_mask(
    path: str | Path, legend: Legend, ignore_value: int | None = None
) -> np.ndarray:
    """Read a label mask as ``(H, W)`` uint8 class ids with 255 = ignore."""
    with reading(path, IMAGES) as ds:
        data = _mask_as_rgb_or_values(ds)
    if data.ndim == 3:
        return colours_to_classes(data, legend, source=str(path))
    return values_to_classes(data, len(legend.classes), ignore_value, source=str(path))
