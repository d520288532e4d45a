"""Windowed reading and writing of large rasters.

Large EO rasters never need to be in memory whole: readers hand out windows,
and writers take them back, keeping the input's CRS and transform so that
outputs overlay the source in any GIS. A window read on its own comes with
its own georeference (:class:`WindowedImage`), so that pixel (0, 0) of the
window is where it is on the map.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window as RasterioWindow

from dial.imagery.georef import GeoReference, Window
from dial.imagery.opener import GEOTIFF, ImageFormatError, OpenPolicy, gdal_env, open_image
from dial.imagery.readers import SUPPORTED_DTYPES, georeference, image_band_indexes


@dataclass(frozen=True)
class RasterInfo:
    """A raster's size, bands (alpha dropped), dtype, and georeference (None for a plain image)."""

    height: int
    width: int
    bands: int
    dtype: str
    geo: GeoReference | None

    @property
    def window(self) -> Window:
        return Window.whole(self.height, self.width)


@dataclass(frozen=True)
class WindowedImage:
    """An ``(H, W, B)`` image cut from its source at ``window``, and the georeference of those pixels.

    ``geo`` is the window's own (its pixel (0, 0) is the window's top-left
    pixel), None when the source has none; an image sent whole has the
    window ``(0, 0, H, W)``.
    """

    image: np.ndarray
    geo: GeoReference | None
    window: Window

    @classmethod
    def whole(cls, image: np.ndarray, geo: GeoReference | None = None) -> "WindowedImage":
        return cls(image, geo, Window.whole(int(image.shape[0]), int(image.shape[1])))


class RasterReader:
    """Reads ``(H, W, B)`` windows from a raster, alpha dropped.

    Opened through the guarded opener (GeoTIFF only unless ``policy`` says
    otherwise); each read runs in its GDAL environment, on whichever thread
    calls it (the tiler reads on its own thread).
    """

    def __init__(self, path: str | Path, policy: OpenPolicy = GEOTIFF, any_band_count: bool = False):
        self._path = path
        self._ds = open_image(path, policy)
        try:
            dtype = self._ds.dtypes[0]
            if dtype not in SUPPORTED_DTYPES:
                raise ImageFormatError(f"dtype {dtype}; DIAL reads uint8 or uint16 rasters", path=path)
            with gdal_env():
                self._bands = image_band_indexes(self._ds, any_band_count)
                self.info = RasterInfo(self._ds.height, self._ds.width, len(self._bands), dtype,
                                       georeference(self._ds))
        except BaseException:
            self._ds.close()
            raise

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        try:
            with gdal_env():
                data = self._ds.read(self._bands, window=RasterioWindow(col_off, row_off, width, height))
        except RasterioError:
            raise ImageFormatError("the raster's pixels cannot be read (damaged or truncated?)",
                                   path=self._path) from None
        return np.ascontiguousarray(np.moveaxis(data, 0, -1))

    @property
    def masked(self) -> bool:
        """Whether some pixels may hold no data: the raster declares a nodata value, a mask or an alpha band."""
        return any(MaskFlags.all_valid not in flags for flags in self._ds.mask_flag_enums)

    def valid(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        """``(H, W)`` bool, True where a pixel holds data: GDAL's dataset mask, which a nodata value, an
        internal mask or an alpha band makes, a pixel being nodata only when it is so in every band."""
        try:
            with gdal_env():
                mask = self._ds.dataset_mask(window=RasterioWindow(col_off, row_off, width, height))
        except RasterioError:
            raise ImageFormatError("the raster's pixels cannot be read (damaged or truncated?)",
                                   path=self._path) from None
        return mask > 0

    def read_window(self, window: tuple[int, int, int, int] | None = None) -> WindowedImage:
        """The pixels of ``window`` (default: the whole raster) with their own georeference.

        ValueError when the window is empty or reaches outside the raster:
        GDAL would pad it with zeros, pixels the raster does not have.
        """
        info = self.info
        window = info.window if window is None else Window(*window)
        if not window.inside(info.height, info.width):
            raise ValueError(f"window {tuple(window)} is not a non-empty window inside the "
                             f"{info.height} × {info.width} (height × width) raster")
        image = self.read(*window)
        return WindowedImage(image, info.geo.for_window(window) if info.geo is not None else None, window)

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> "RasterReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class GeoTiffWriter:
    """A tiled, deflate-compressed GeoTIFF written window by window.

    Deflate level 1: on a 4000x4000 class map it compresses 6x faster than
    the default level 6 (0.07 s against 0.43 s) for a file 28 % larger, and
    compression runs on the same cores as inference.
    """

    def __init__(self, path: str | Path, *, height: int, width: int, bands: int, dtype: str,
                 geo: GeoReference | None, block_px: int = 256, colormap: dict | None = None,
                 nodata: float | None = None, scale_offset: tuple[float, float] | None = None):
        profile = {
            "driver": "GTiff", "height": height, "width": width, "count": bands, "dtype": dtype,
            "tiled": True, "blockxsize": block_px, "blockysize": block_px, "compress": "deflate",
            "zlevel": 1, "nodata": nodata,
        }
        if geo is not None:
            if geo.crs:
                profile["crs"] = geo.crs
            profile["transform"] = Affine(*geo.transform)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self._ds = rasterio.open(path, "w", **profile)
        if colormap and bands == 1:
            self._ds.write_colormap(1, colormap)
        if scale_offset is not None:
            # Declared in the file (GDAL_METADATA), so that a GIS decodes value = offset + scale * byte.
            self._ds.scales, self._ds.offsets = (scale_offset[0],) * bands, (scale_offset[1],) * bands

    def write(self, array: np.ndarray, row_off: int, col_off: int) -> None:
        """Write ``(H, W)`` or ``(H, W, B)`` at the given offset."""
        data = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
        window = RasterioWindow(col_off, row_off, data.shape[2], data.shape[1])
        self._ds.write(data, window=window)

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> "GeoTiffWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
