"""Pixels in and out of GeoTIFFs with QGIS's own GDAL, window by window.

The plugin never reads more of a raster than the window it works on, and the
class map lives in a GeoTIFF on disk (255 = not segmented), so large layers
do not have to fit in memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NODATA = 255
# The largest window the plugin sends in one go (about 190 MB for 3 uint8 bands).
MAX_WINDOW_PX = 8000 * 8000


@dataclass(frozen=True)
class Grid:
    """A raster's pixel grid: size, CRS (WKT) and the affine transform in rasterio's order (a, b, c, d, e, f)."""

    height: int
    width: int
    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]

    @property
    def crs(self) -> str:
        """"EPSG:nnnn" when the CRS has an EPSG code (short, as the server prefers), else its WKT."""
        from osgeo import osr

        srs = osr.SpatialReference()
        if not self.crs_wkt or srs.ImportFromWkt(self.crs_wkt) != 0:
            return ""
        srs.AutoIdentifyEPSG()
        code = srs.GetAuthorityCode(None)
        return f"EPSG:{code}" if srs.GetAuthorityName(None) == "EPSG" and code else self.crs_wkt

    def pixel(self, x: float, y: float) -> tuple[float, float]:
        """(row, col), fractional, of map point (x, y) in the grid's CRS."""
        a, b, c, d, e, f = self.transform
        det = a * e - b * d
        col = (e * (x - c) - b * (y - f)) / det
        row = (-d * (x - c) + a * (y - f)) / det
        return row, col

    def xy(self, row: float, col: float) -> tuple[float, float]:
        a, b, c, d, e, f = self.transform
        return a * col + b * row + c, d * col + e * row + f

    def window_transform(self, row_off: int, col_off: int) -> tuple[float, ...]:
        a, b, _, d, e, _ = self.transform
        x, y = self.xy(row_off, col_off)
        return (a, b, x, d, e, y)

    def clip(self, row_off: int, col_off: int, height: int, width: int) -> tuple[int, int, int, int]:
        r0, c0 = max(0, row_off), max(0, col_off)
        r1, c1 = min(self.height, row_off + height), min(self.width, col_off + width)
        return r0, c0, max(0, r1 - r0), max(0, c1 - c0)


def _open(path: str, update: bool = False):
    from osgeo import gdal

    gdal.UseExceptions()
    return gdal.Open(path, gdal.GA_Update if update else gdal.GA_ReadOnly)


def grid_of(path: str) -> Grid:
    ds = _open(path)
    c, a, b, f, d, e = ds.GetGeoTransform()
    return Grid(ds.RasterYSize, ds.RasterXSize, ds.GetProjection(), (a, b, c, d, e, f))


def image_bands(ds) -> list[int]:
    """1-based bands without alpha, as the server counts them."""
    from osgeo import gdal

    return [i for i in range(1, ds.RasterCount + 1)
            if ds.GetRasterBand(i).GetColorInterpretation() != gdal.GCI_AlphaBand]


def band_layout(path: str) -> tuple[int, str]:
    """(image bands, sample type name) as the server counts them: alpha left out."""
    from osgeo import gdal

    ds = _open(path)
    bands = image_bands(ds)
    name = gdal.GetDataTypeName(ds.GetRasterBand(bands[0]).DataType).lower() if bands else ""
    return len(bands), {"byte": "uint8"}.get(name, name)


def read_window(path: str, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
    """An ``(H, W, B)`` window in the raster's own dtype."""
    from .errors import PluginError

    if height * width > MAX_WINDOW_PX:
        raise PluginError(f"The extent is {width} x {height} pixels, more than the plugin sends at once "
                          f"({MAX_WINDOW_PX // 10**6} Mpx). Zoom in and segment the visible extent.")
    ds = _open(path)
    bands = [ds.GetRasterBand(i).ReadAsArray(col_off, row_off, width, height) for i in image_bands(ds)]
    return np.ascontiguousarray(np.stack(bands, axis=-1))


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def create_class_map(path: str, grid: Grid, classes) -> None:
    """A uint8 class-map GeoTIFF on ``grid``, all 255, with the classes' colours and names (GDAL categories)."""
    from osgeo import gdal

    gdal.UseExceptions()
    driver = gdal.GetDriverByName("GTiff")
    ds = driver.Create(path, grid.width, grid.height, 1, gdal.GDT_Byte,
                       options=["TILED=YES", "COMPRESS=DEFLATE", "ZLEVEL=1"])
    a, b, c, d, e, f = grid.transform
    ds.SetGeoTransform((c, a, b, f, d, e))
    ds.SetProjection(grid.crs_wkt)
    band = ds.GetRasterBand(1)
    band.SetNoDataValue(NODATA)
    band.Fill(NODATA)
    table = gdal.ColorTable()
    for class_id, _, colour in classes:
        table.SetColorEntry(int(class_id), (*hex_rgb(colour), 255))
    band.SetRasterColorTable(table)
    band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
    names = [""] * (max((int(i) for i, _, _ in classes), default=-1) + 1)
    for class_id, name, _ in classes:
        names[int(class_id)] = name
    band.SetCategoryNames(names)
    ds.FlushCache()
    ds = None


def read_labels(path: str, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
    ds = _open(path)  # held while its band is read: GDAL frees bands with their dataset
    return ds.GetRasterBand(1).ReadAsArray(col_off, row_off, width, height)


def write_labels(path: str, row_off: int, col_off: int, labels: np.ndarray) -> None:
    ds = _open(path, update=True)
    ds.GetRasterBand(1).WriteArray(np.ascontiguousarray(labels, dtype=np.uint8), col_off, row_off)
    ds.FlushCache()
    ds = None
