"""A request's image source, read: an image sent inline, a whole GeoTIFF, or a window of one.

The Adapter (CreateSession), Acquisition (RankPatches, GetUncertaintyMap and
queue jobs) and the Segmenter (PredictRaster) read their sources here, so a
raster is always opened through the URI policy's guarded opener, checked
against the server's limits and the model before a pixel is read, and cut to
its window together with that window's own georeference
(``dial.imagery.raster.WindowedImage``). A PredictRaster source is read
through a ``RasterView`` instead: the request's window or map AOI of it, its
bands mapped and rescaled to the model's (``dial.imagery.view``). Windows,
map bounds and band mappings are translated to and from protobuf here as well.
"""
from __future__ import annotations

from dial.imagery.georef import GeoReference, Window
from dial.imagery.raster import RasterInfo, RasterReader, WindowedImage
from dial.imagery.view import BandMapping, RasterView
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


def band_mapping_from_proto(request, manifest: Manifest) -> BandMapping:
    """The request's ``source_bands`` and ``source_range``, each defaulting to the model manifest's."""
    source_range = manifest.source_range
    if request.HasField("source_range"):
        source_range = (request.source_range.min, request.source_range.max)
    return BandMapping(tuple(request.source_bands) or manifest.source_bands, source_range)


def check_source(v: Violations, prefix: str, field: str, bands: int, dtype: str | None, manifest: Manifest,
                 mapping: BandMapping) -> None:
    """Whether ``mapping`` makes a source of ``bands`` x ``dtype`` (the request's ``field``) the model's input;
    the mapping's own fields are reported under ``prefix`` (``header.source_bands``)."""
    if dtype is None:  # an unknown dtype, reported where it was decoded
        return
    model = f"model {manifest.name}:{manifest.version}"
    for part, message in mapping.problems(bands, dtype, manifest.n_bands, manifest.input_dtype):
        where = f"{field}.{part}" if part in ("bands", "dtype") else f"{prefix}.{part}"
        v.add(where, f"{model}: {message}")


def area_window(request, info: RasterInfo, prefix: str = "header") -> Window:
    """The pixels of the request's ``area`` oneof (a ``window`` or a map ``aoi``) in the raster; all of it
    when unset. An AOI is cut at the raster's edges; one that misses the raster is refused."""
    which = request.WhichOneof("area")
    if which is None:
        return info.window
    size = f"{info.height} × {info.width} (height × width)"
    if which == "window":
        window = window_from_proto(request.window)
        if not window.inside(info.height, info.width):
            raise invalid_argument([(f"{prefix}.window", f"{tuple(window)} must be a non-empty window inside the "
                                                         f"{size} raster (rows 0..{info.height - 1}, columns "
                                                         f"0..{info.width - 1})")])
        return window
    aoi, field = request.aoi, f"{prefix}.aoi"
    if info.geo is None:
        raise invalid_argument([(field, "the raster has no georeference, so map bounds mean nothing in it; give a "
                                        "pixel window instead")])
    try:
        window = info.geo.window_of(aoi.min_x, aoi.min_y, aoi.max_x, aoi.max_y, aoi.crs or None)
    except ValueError as error:
        raise invalid_argument([(field, str(error))]) from None
    inside = window.clip(info.height, info.width)
    if inside.is_empty:
        min_x, min_y, max_x, max_y = info.geo.bounds(info.window)
        raise invalid_argument([(field, f"({aoi.min_x}, {aoi.min_y}, {aoi.max_x}, {aoi.max_y}) "
                                        f"{'in ' + aoi.crs + ' ' if aoi.crs else ''}does not overlap the raster, "
                                        f"which covers ({min_x}, {min_y}, {max_x}, {max_y}) in "
                                        f"{info.geo.crs or 'its own map units'}")])
    return inside


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
                        f"must be a non-empty window inside the {info.height} × {info.width} (height × width) raster")
            # The window is held in memory whole, so the in-memory limit applies.
            check_shape(v, field, window.height, window.width, info.bands, self.max_image_px)
            check_model_input(v, field, info.bands, info.dtype, manifest)
            v.raise_if_any()
            return reader.read_window(window)

    def open_view(self, uri: str, field: str, manifest: Manifest, max_px: int, request,
                  prefix: str = "header") -> RasterView:
        """What the model sees of the raster ``uri`` names (``model_view``), read window by window; the raster
        is checked against ``max_px`` first. The caller closes it."""
        # Any band count: source_bands may choose a model's bands from a multispectral raster.
        reader = self.policy.open_raster(uri, f"{field}.uri", any_band_count=True)
        try:
            info = reader.info
            v = Violations()
            check_shape(v, field, info.height, info.width, None, max_px)
            v.raise_if_any()
        except BaseException:
            reader.close()
            raise
        return self.model_view(reader, request, field, manifest, prefix)

    @staticmethod
    def model_view(reader: RasterReader, request, field: str, manifest: Manifest, prefix: str = "header") -> RasterView:
        """What the model sees of an open raster (the request's ``field``): the request's area of it, its bands
        mapped and rescaled as the request (or the model) says, checked against the model before a pixel is read.
        The view owns ``reader`` from here: closing it, or a refusal, closes the reader."""
        try:
            mapping = band_mapping_from_proto(request, manifest)
            info = reader.info
            v = Violations()
            check_source(v, prefix, field, info.bands, info.dtype, manifest, mapping)
            v.raise_if_any()
            return RasterView(reader, area_window(request, info, prefix), mapping, manifest.input_dtype)
        except BaseException:
            reader.close()
            raise
