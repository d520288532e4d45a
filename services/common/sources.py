"""A request's image source, read: an image sent inline, a whole GeoTIFF, or a window of one.

The Adapter (CreateSession), Acquisition (RankPatches, GetUncertaintyMap and
queue jobs) and the Segmenter (PredictRaster) read their sources here, so a
raster is always opened through the URI policy's guarded opener, checked
against the server's limits and the model before a pixel is read, and cut to
its window together with that window's own georeference
(``dial.imagery.raster.WindowedImage``). Windows and map bounds are
translated to and from protobuf here as well.
"""
from __future__ import annotations

from dial.imagery.georef import GeoReference, Window
from dial.imagery.raster import RasterReader, WindowedImage
from dial.model.manifest import Manifest
from dial_client.wire import common_pb2
from dial_services.common.errors import Violations, invalid_argument
from dial_services.common.uri_policy import UriPolicy
from dial_services.common.validation import check_model_input, check_shape, geo_from_proto, image_from_proto


def window_from_proto(window: common_pb2.Window) -> Window:
    return Window(window.row_off, window.col_off, window.height, window.width)


def window_to_proto(window: tuple[int, int, int, int]) -> common_pb2.Window:
    row_off, col_off, height, width = window
    return common_pb2.Window(row_off=row_off, col_off=col_off, height=height, width=width)


def bounds_to_proto(geo: GeoReference | None, window: tuple[int, int, int, int]) -> common_pb2.MapBounds:
    """Where ``window`` lies on the map; the empty message when there is no georeference."""
    if geo is None:
        return common_pb2.MapBounds()
    min_x, min_y, max_x, max_y = geo.bounds(window)
    return common_pb2.MapBounds(min_x=min_x, min_y=min_y, max_x=max_x, max_y=max_y, crs=geo.crs or "")


class Sources:
    """Reads requests' sources for one server: ``policy`` says which rasters it may open, and
    ``max_image_px`` how large an image it holds in memory at once."""

    def __init__(self, policy: UriPolicy, max_image_px: int):
        self.policy = policy
        self.max_image_px = max_image_px

    def read(self, request, manifest: Manifest) -> WindowedImage:
        """The image of the request's ``source`` oneof: its ``image``, ``raster`` or ``raster_window``."""
        which = request.WhichOneof("source")
        if which == "image":
            v = Violations()
            image = image_from_proto(request.image, "image", self.max_image_px, manifest, v)
            geo = geo_from_proto(request.image.geo, "image.geo", v)
            v.raise_if_any()
            return WindowedImage.whole(image, geo)
        if which == "raster":
            return self.read_raster(request.raster.uri, "raster", manifest)
        if which == "raster_window":
            return self.read_raster(request.raster_window.raster.uri, "raster_window.raster", manifest,
                                    window_from_proto(request.raster_window.window), "raster_window.window")
        names = ", ".join(f.name for f in request.DESCRIPTOR.oneofs_by_name["source"].fields)
        raise invalid_argument([("source", f"set one of the request's sources ({names})")])

    def read_raster(self, uri: str, field: str, manifest: Manifest, window: Window | None = None,
                    window_field: str = "window") -> WindowedImage:
        """The pixels of ``window`` (default: all) of the raster that ``uri``, the request's ``field``
        (a ``RasterReference``), names; ``window_field`` is where the request gave the window."""
        with self.policy.open_raster(uri, f"{field}.uri") as reader:
            info = reader.info
            v = Violations()
            if window is None:
                window = info.window
            else:
                v.check(window.inside(info.height, info.width), window_field,
                        f"must be a non-empty window inside the {info.height}x{info.width} raster")
            # The window is held in memory whole, so the in-memory limit applies.
            check_shape(v, field, window.height, window.width, info.bands, self.max_image_px)
            check_model_input(v, field, info.bands, info.dtype, manifest)
            v.raise_if_any()
            return reader.read_window(window)

    def open_raster(self, uri: str, field: str, manifest: Manifest, max_px: int) -> RasterReader:
        """A reader of the whole raster ``uri`` names, for reading window by window; it is checked against
        ``max_px`` and the model first. The caller closes it."""
        reader = self.policy.open_raster(uri, f"{field}.uri")
        try:
            info = reader.info
            v = Violations()
            check_shape(v, field, info.height, info.width, info.bands, max_px)
            check_model_input(v, field, info.bands, info.dtype, manifest)
            v.raise_if_any()
        except BaseException:
            reader.close()
            raise
        return reader
