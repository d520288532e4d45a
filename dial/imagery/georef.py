"""Where pixels lie: one window type, one georeference type, and the arithmetic between pixels and the map.

Every part of DIAL that cuts an image into windows (the tiler, patch
ranking, the services' raster windows) uses :class:`Window`, and every part
that places pixels on the map (map clicks, a window's own transform, a
patch's bounds, GeoTIFF outputs) uses :class:`GeoReference`. The affine
maths is plain numpy, so it is tested without GDAL; only a point given in
another CRS needs PROJ, which is imported for that alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

Transform = tuple[float, float, float, float, float, float]
# rasterio's Affine.identity(): what GDAL reports for an image with no georeferencing.
IDENTITY: Transform = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
# Points per edge when a map rectangle is reprojected: edges bend in another CRS.
EDGE_POINTS = 21


class Window(NamedTuple):
    """A rectangle of pixels: top-left ``(row_off, col_off)`` and size, as the API's ``Window`` message.

    A tuple, so ``r, c, h, w = window`` and JSON lists keep working, and
    windows are hashable keys.
    """

    row_off: int
    col_off: int
    height: int
    width: int

    @classmethod
    def whole(cls, height: int, width: int) -> "Window":
        """The window that is all of a ``height`` x ``width`` image."""
        return cls(0, 0, height, width)

    @property
    def bottom(self) -> int:
        return self.row_off + self.height

    @property
    def right(self) -> int:
        return self.col_off + self.width

    @property
    def area(self) -> int:
        return max(self.height, 0) * max(self.width, 0)

    @property
    def is_empty(self) -> bool:
        return self.height <= 0 or self.width <= 0

    @property
    def slices(self) -> tuple[slice, slice]:
        """``image[window.slices]`` is the window's pixels of an ``(H, W, ...)`` array."""
        return slice(self.row_off, self.bottom), slice(self.col_off, self.right)

    def overlaps(self, other: tuple[int, int, int, int]) -> bool:
        """Whether the two windows share a pixel (touching edges share none)."""
        other = Window(*other)
        return (self.row_off < other.bottom and other.row_off < self.bottom
                and self.col_off < other.right and other.col_off < self.right)

    def inside(self, height: int, width: int) -> bool:
        """Whether the window is non-empty and lies wholly inside a ``height`` x ``width`` image."""
        return (not self.is_empty and self.row_off >= 0 and self.col_off >= 0
                and self.bottom <= height and self.right <= width)

    def intersection(self, other: tuple[int, int, int, int]) -> "Window":
        """The pixels both windows hold; an empty window (zero height or width) when they share none."""
        other = Window(*other)
        top, left = max(self.row_off, other.row_off), max(self.col_off, other.col_off)
        bottom, right = min(self.bottom, other.bottom), min(self.right, other.right)
        return Window(top, left, max(bottom - top, 0), max(right - left, 0))

    def clip(self, height: int, width: int) -> "Window":
        """The part of the window inside a ``height`` x ``width`` image (border patches cut short)."""
        return self.intersection(Window.whole(height, width))


def _six(values) -> Transform:
    transform = tuple(float(v) for v in values)
    if len(transform) != 6:
        raise ValueError(f"an affine transform has 6 coefficients (a, b, c, d, e, f), got {len(transform)}")
    return transform  # type: ignore[return-value]


@dataclass(frozen=True)
class GeoReference:
    """A CRS (WKT, ``EPSG:nnnn`` or PROJ; None when unknown) and the affine pixel-to-map transform.

    ``transform`` is in rasterio's Affine order: ``x = a*col + b*row + c`` and
    ``y = d*col + e*row + f``, where ``(col, row)`` is a pixel's top-left corner.
    """

    crs: str | None
    transform: Transform = IDENTITY

    def __post_init__(self) -> None:
        object.__setattr__(self, "crs", self.crs or None)
        object.__setattr__(self, "transform", _six(self.transform))

    @property
    def is_georeferenced(self) -> bool:
        """False for a plain image: no CRS and the identity transform GDAL gives it."""
        return self.crs is not None or self.transform != IDENTITY

    @property
    def invertible(self) -> bool:
        a, b, _, d, e, _ = self.transform
        return all(math.isfinite(t) for t in self.transform) and a * e - b * d != 0

    def pixel_to_map(self, row, col):
        """Map ``(x, y)`` of pixel coordinates ``(row, col)`` (fractional; scalars or arrays)."""
        a, b, c, d, e, f = self.transform
        row, col = np.asarray(row, dtype=np.float64), np.asarray(col, dtype=np.float64)
        x, y = a * col + b * row + c, d * col + e * row + f
        return (float(x), float(y)) if x.ndim == 0 else (x, y)

    def map_to_pixel(self, x, y, crs: str | None = None):
        """Fractional ``(row, col)`` of map coordinates ``(x, y)``, given in ``crs`` (default: this one's).

        ``floor`` of each gives the pixel the point falls in. ValueError when
        the transform cannot be inverted or ``crs`` cannot be transformed.
        """
        if not self.invertible:
            raise ValueError("the transform is not invertible (a*e - b*d == 0): pixel sizes cannot be zero")
        if crs and self.crs and crs != self.crs:
            x, y = reproject(x, y, crs, self.crs)
        a, b, c, d, e, f = self.transform
        x, y = np.asarray(x, dtype=np.float64) - c, np.asarray(y, dtype=np.float64) - f
        det = a * e - b * d
        col, row = (e * x - b * y) / det, (-d * x + a * y) / det
        return (float(row), float(col)) if row.ndim == 0 else (row, col)

    def for_window(self, window: tuple[int, int, int, int]) -> "GeoReference":
        """The georeference of a window's pixels on their own: its pixel (0, 0) is the window's top-left."""
        window = Window(*window)
        a, b, _, d, e, _ = self.transform
        x, y = self.pixel_to_map(window.row_off, window.col_off)
        return GeoReference(self.crs, (a, b, x, d, e, y))

    def bounds(self, window: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
        """``(min_x, min_y, max_x, max_y)`` of a window's four outer corners on the map."""
        window = Window(*window)
        rows = np.array([window.row_off, window.row_off, window.bottom, window.bottom])
        cols = np.array([window.col_off, window.right, window.col_off, window.right])
        xs, ys = self.pixel_to_map(rows, cols)
        return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())

    def window_of(self, min_x: float, min_y: float, max_x: float, max_y: float, crs: str | None = None) -> Window:
        """The pixels a map rectangle (given in ``crs``, default this one's) touches, not cut to any image.

        A rectangle in another CRS is curved in this one, so its edges are
        reprojected at ``EDGE_POINTS`` points each, not only its corners.
        ValueError when it is not a rectangle (min above max, or not finite)
        or cannot be transformed.
        """
        if not all(math.isfinite(v) for v in (min_x, min_y, max_x, max_y)) or min_x >= max_x or min_y >= max_y:
            raise ValueError(f"({min_x}, {min_y}, {max_x}, {max_y}) is not a rectangle: it needs finite "
                             "min_x < max_x and min_y < max_y")
        t = np.linspace(0.0, 1.0, EDGE_POINTS)
        xs = np.concatenate([min_x + (max_x - min_x) * t, np.full_like(t, max_x), max_x - (max_x - min_x) * t,
                             np.full_like(t, min_x)])
        ys = np.concatenate([np.full_like(t, min_y), min_y + (max_y - min_y) * t, np.full_like(t, max_y),
                             max_y - (max_y - min_y) * t])
        rows, cols = self.map_to_pixel(xs, ys, crs)
        if not (np.all(np.isfinite(rows)) and np.all(np.isfinite(cols))):
            raise ValueError("the rectangle does not map to pixels of this raster")
        # A pixel the rectangle only touches at its edge is not in it: round edges within 1e-6 px first.
        top, left = math.floor(rows.min() + 1e-6), math.floor(cols.min() + 1e-6)
        bottom, right = math.ceil(rows.max() - 1e-6), math.ceil(cols.max() - 1e-6)
        return Window(top, left, bottom - top, right - left)

    def to_json(self) -> list:
        """``[crs, [a, b, c, d, e, f]]``: how stores keep it on disk."""
        return [self.crs, list(self.transform)]

    @classmethod
    def from_json(cls, data) -> "GeoReference":
        crs, transform = data
        return cls(crs, transform)


def reproject(x, y, crs_from: str, crs_to: str):
    """Map coordinates from ``crs_from`` to ``crs_to`` (PROJ, through rasterio); ValueError when it cannot."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.warp import transform as warp

    scalar = np.ndim(x) == 0
    try:
        xs, ys = warp(CRS.from_user_input(crs_from), CRS.from_user_input(crs_to),
                      np.atleast_1d(x).tolist(), np.atleast_1d(y).tolist())
    except CRSError as error:
        raise ValueError(str(error)) from None
    return (xs[0], ys[0]) if scalar else (np.asarray(xs), np.asarray(ys))
