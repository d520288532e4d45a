"""Clicks in pixel or map coordinates, and their protobuf form."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .wire import common_pb2


@dataclass(frozen=True)
class Click:
    """A click on a pixel of the full image: row, column and class id."""

    row: int
    col: int
    class_id: int

    def to_proto(self) -> common_pb2.Click:
        _check_non_negative(row=self.row, col=self.col, class_id=self.class_id)
        return common_pb2.Click(
            pixel=common_pb2.PixelPoint(row=self.row, col=self.col),
            class_id=self.class_id,
        )


@dataclass(frozen=True)
class MapClick:
    """A click at map coordinates ``(x, y)`` in ``crs`` ("EPSG:nnnn" or WKT).

    The server turns it into the pixel containing it, so the image or raster
    must be georeferenced.
    """

    x: float
    y: float
    class_id: int
    crs: str

    def to_proto(self) -> common_pb2.Click:
        _check_non_negative(class_id=self.class_id)
        if not self.crs:
            raise ValueError("MapClick.crs must name the coordinate reference system of x and y")
        return common_pb2.Click(
            map=common_pb2.MapPoint(x=self.x, y=self.y, crs=self.crs),
            class_id=self.class_id,
        )


AnyClick = Union[Click, MapClick]


def click_from_proto(click: common_pb2.Click) -> AnyClick:
    location = click.WhichOneof("location")
    if location == "pixel":
        return Click(row=click.pixel.row, col=click.pixel.col, class_id=click.class_id)
    if location == "map":
        return MapClick(x=click.map.x, y=click.map.y, class_id=click.class_id, crs=click.map.crs)
    raise ValueError("click has neither a pixel nor a map location")


def _check_non_negative(**values: int) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"click {name} must be >= 0, got {value}")
