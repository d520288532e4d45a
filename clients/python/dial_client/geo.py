"""Georeferencing: a CRS plus the affine pixel-to-map transform."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from .wire import common_pb2


@dataclass(frozen=True)
class GeoReference:
    """``crs`` as WKT or "EPSG:nnnn"; ``transform`` as rasterio's Affine (a, b, c, d, e, f).

    ``tuple(rasterio_dataset.transform)[:6]`` gives the transform of a raster
    opened with rasterio.
    """

    crs: str
    transform: tuple[float, float, float, float, float, float]

    def __post_init__(self) -> None:
        transform = tuple(float(v) for v in self.transform)
        if len(transform) != 6:
            raise ValueError(f"transform needs the 6 affine coefficients a..f, got {len(transform)}")
        object.__setattr__(self, "transform", transform)

    def to_proto(self) -> common_pb2.GeoReference:
        return common_pb2.GeoReference(crs=self.crs, transform=self.transform)

    @classmethod
    def from_proto(cls, geo: common_pb2.GeoReference) -> Optional["GeoReference"]:
        """The reference, or None for an empty message (a source without one)."""
        if not geo.crs and not geo.transform:
            return None
        return cls(crs=geo.crs, transform=_six(geo.transform))


def _six(values: Sequence[float]) -> tuple[float, float, float, float, float, float]:
    a, b, c, d, e, f = values
    return (a, b, c, d, e, f)
