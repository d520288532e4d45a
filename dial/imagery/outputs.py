"""Output GeoTIFFs a GIS opens as they are: cloud-optimised, with nodata, class names and value scaling.

Rows arrive one tile row at a time, so they are written to a tiled GeoTIFF
staged beside the target, which GDAL's COG driver then copies into the
target's layout (overviews, blocks ordered for range reads) and the file is
published atomically (:func:`dial.files.atomic_path`): memory stays one tile
row, and a 4000x4000 map opens in QGIS at its overview level instead of
reading every pixel. Class names go into a GDAL PAM sidecar,
``<target>.aux.xml`` (category names and a thematic raster attribute
table), which is where GDAL's GTiff driver itself keeps them: TIFF has no
tag for them. QGIS 3.22 takes the labels from there but lists all 256
entries of the TIFF's colour table (TIFF palettes always have 2^bits), so
a QGIS default style, ``<target stem>.qml``, lists just the model's classes.
An output without categories removes stale sidecars, so an old class map's
names never describe new pixels.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio.shutil

from dial.files import atomic_path, atomic_write_text
from dial.imagery.georef import GeoReference
from dial.imagery.opener import gdal_env
from dial.imagery.raster import GeoTiffWriter

# Written on class-map pixels with no data in the source; the ignore_index of ground truth, so the same
# byte means "no class here" on both sides.
NODATA_CLASS = 255
# A uint8 probability band: bytes 0..254 stand for 0..1, and 255 is nodata.
PROBABILITY_STEPS = 254


@dataclass(frozen=True)
class Category:
    name: str
    colour: str  # "#RRGGBB"

    @property
    def rgba(self) -> tuple[int, int, int, int]:
        return tuple(int(self.colour[j : j + 2], 16) for j in (1, 3, 5)) + (255,)


def sidecar_path(path: str | Path) -> Path:
    return Path(f"{path}.aux.xml")


def style_path(path: str | Path) -> Path:
    """The QGIS default style QGIS loads with the raster at ``path``."""
    return Path(path).with_suffix(".qml")


def sidecar_paths(path: str | Path) -> tuple[Path, Path]:
    """The files a class map at ``path`` comes with."""
    return sidecar_path(path), style_path(path)


def categories_xml(categories: list[Category]) -> str:
    """A PAM document naming band 1's classes: GDAL category names (read by gdalinfo and QGIS's legend)
    and the same as a thematic raster attribute table with each class's value, name and colour."""
    fields = [("value", 0, 5), ("class_name", 2, 2), ("red", 0, 6), ("green", 0, 7), ("blue", 0, 8)]
    lines = ["<PAMDataset>", '  <PAMRasterBand band="1">', "    <CategoryNames>"]
    lines += [f"      <Category>{escape(c.name)}</Category>" for c in categories]
    lines += ["    </CategoryNames>", '    <GDALRasterAttributeTable tableType="thematic">']
    # GDALRATFieldType (0 integer, 2 string) and GDALRATFieldUsage (5 MinMax, 2 Name, 6-8 Red, Green, Blue).
    lines += [f'      <FieldDefn index="{i}"><Name>{name}</Name><Type>{kind}</Type><Usage>{usage}</Usage></FieldDefn>'
              for i, (name, kind, usage) in enumerate(fields)]
    for value, c in enumerate(categories):
        cells = [str(value), escape(c.name), *(str(v) for v in c.rgba[:3])]
        lines.append(f'      <Row index="{value}">' + "".join(f"<F>{cell}</F>" for cell in cells) + "</Row>")
    lines += ["    </GDALRasterAttributeTable>", "  </PAMRasterBand>", "</PAMDataset>", ""]
    return "\n".join(lines)


def qgis_style_xml(categories: list[Category]) -> str:
    """A QGIS paletted style of band 1 with one legend entry per class, value, colour and name."""
    entries = "\n".join(f'        <paletteEntry value="{value}" color="{c.colour}" alpha="255" '
                         f'label="{escape(c.name, {chr(34): "&quot;"})}"/>' for value, c in enumerate(categories))
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            '<qgis version="3.22" styleCategories="Symbology">\n  <pipe>\n'
            '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1">\n'
            "      <rasterTransparency/>\n      <colorPalette>\n"
            f"{entries}\n      </colorPalette>\n    </rasterrenderer>\n  </pipe>\n</qgis>\n")


class CogWriter:
    """A single-band uint8 cloud-optimised GeoTIFF at ``path``, written window by window.

    It appears at ``path`` whole when the block ends, or not at all when it
    raises; ``overwrite=False`` raises FileExistsError, at once when the file
    or one of its sidecars exists, and at the end rather than replace a file
    another writer made meanwhile.
    ``categories`` name the values 0..K-1 (colour table and sidecar);
    ``scale_offset`` declares how the bytes decode; ``resampling`` makes
    the overviews ("nearest" keeps classes classes, "average" suits a
    continuous map).
    """

    def __init__(self, path: str | Path, *, height: int, width: int, geo: GeoReference | None,
                 nodata: int | None = None, categories: list[Category] | None = None,
                 scale_offset: tuple[float, float] | None = None, resampling: str = "nearest",
                 overwrite: bool = False):
        self.path = Path(path)
        self._categories = categories
        self._resampling = resampling
        self._overwrite = overwrite
        # Sidecars of an earlier class map here are stale once this file replaces it.
        self._replacing = os.path.lexists(self.path)
        if not overwrite:
            for existing in (self.path, *sidecar_paths(self.path)) if categories else (self.path,):
                if os.path.lexists(existing):
                    raise FileExistsError(errno.EEXIST, "exists", str(existing))
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".staging.tif", dir=self.path.parent)
        os.close(fd)
        self._staging = Path(name)
        try:
            colormap = {i: c.rgba for i, c in enumerate(categories)} if categories else None
            self._writer = GeoTiffWriter(self._staging, height=height, width=width, bands=1, dtype="uint8",
                                         geo=geo, colormap=colormap, nodata=nodata, scale_offset=scale_offset)
        except BaseException:
            self._discard()
            raise

    def write(self, array: np.ndarray, row_off: int, col_off: int) -> None:
        self._writer.write(array, row_off, col_off)

    def commit(self) -> None:
        self._writer.close()
        try:
            with atomic_path(self.path, overwrite=self._overwrite) as tmp, gdal_env():
                rasterio.shutil.copy(self._staging, tmp, driver="COG", COMPRESS="DEFLATE", LEVEL=1,
                                     BLOCKSIZE=256, OVERVIEW_RESAMPLING=self._resampling.upper())
            pam, style = sidecar_paths(self.path)
            if self._categories:
                atomic_write_text(pam, categories_xml(self._categories))
                atomic_write_text(style, qgis_style_xml(self._categories))
            elif self._replacing:
                pam.unlink(missing_ok=True)
                style.unlink(missing_ok=True)
        finally:
            self._discard()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        self._discard()

    def _discard(self) -> None:
        for leftover in (self._staging, sidecar_path(self._staging)):
            leftover.unlink(missing_ok=True)

    def __enter__(self) -> "CogWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
