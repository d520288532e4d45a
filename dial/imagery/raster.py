"""Windowed reading and writing of large rasters.

Large EO rasters never need to be in memory whole: readers hand out windows,
and writers take them back, keeping the input's CRS and transform so that
outputs overlay the source in any GIS.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from dial.imagery.opener import GEOTIFF, ImageFormatError, OpenPolicy, gdal_env, open_image
from dial.imagery.readers import SUPPORTED_DTYPES, GeoInfo, geo_info, image_band_indexes


@dataclass(frozen=True)
class RasterInfo:
    height: int
    width: int
    bands: int
    dtype: str
    geo: GeoInfo


class RasterReader:
    """Reads ``(H, W, B)`` windows from a raster, alpha dropped.

    Opened through the guarded opener (GeoTIFF only unless ``policy`` says
    otherwise); each read runs in its GDAL environment, on whichever thread
    calls it (the tiler reads on its own thread).
    """

    def __init__(self, path: str | Path, policy: OpenPolicy = GEOTIFF):
        self._path = path
        self._ds = open_image(path, policy)
        try:
            dtype = self._ds.dtypes[0]
            if dtype not in SUPPORTED_DTYPES:
                raise ImageFormatError(f"dtype {dtype}; DIAL reads uint8 or uint16 rasters", path=path)
            with gdal_env():
                self._bands = image_band_indexes(self._ds)
                self.info = RasterInfo(self._ds.height, self._ds.width, len(self._bands), dtype,
                                       geo_info(self._ds))
        except BaseException:
            self._ds.close()
            raise

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        try:
            with gdal_env():
                data = self._ds.read(self._bands, window=Window(col_off, row_off, width, height))
        except RasterioError:
            raise ImageFormatError("the raster's pixels cannot be read (damaged or truncated?)",
                                   path=self._path) from None
        return np.ascontiguousarray(np.moveaxis(data, 0, -1))

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
                 geo: GeoInfo | None, block_px: int = 256, colormap: dict | None = None):
        profile = {
            "driver": "GTiff", "height": height, "width": width, "count": bands, "dtype": dtype,
            "tiled": True, "blockxsize": block_px, "blockysize": block_px, "compress": "deflate",
            "zlevel": 1,
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

    def write(self, array: np.ndarray, row_off: int, col_off: int) -> None:
        """Write ``(H, W)`` or ``(H, W, B)`` at the given offset."""
        data = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
        window = Window(col_off, row_off, data.shape[2], data.shape[1])
        self._ds.write(data, window=window)

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> "GeoTiffWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
