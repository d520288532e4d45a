"""SegmenterClient: predictions and model metadata from the Segmenter service."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Union

import grpc
import numpy as np

from .clicks import AnyClick
from .errors import DialError, Internal, NotFound, hint_image_layout
from .geo import GeoReference
from .models import ModelInfo
from .transport import DEFAULT_MAX_MESSAGE_BYTES, RetryPolicy, ServiceClient, TlsConfig
from .wire import (
    class_map_from_proto,
    common_pb2,
    data_type_of,
    image_to_proto,
    probabilities_from_proto,
    segmenter_pb2,
    segmenter_pb2_grpc,
)

# Side of the tiles an in-memory raster is streamed in: 1024^2 x 9 bands of
# uint16 is 18.9 MB per message, large enough to keep per-message overhead
# small and far below the message size limit.
DEFAULT_TILE_PX = 1024

ProgressCallback = Callable[[int, int], None]
RasterSource = Union[str, "os.PathLike[str]", np.ndarray]


@dataclass(frozen=True)
class PredictResult:
    """A prediction: ``labels`` (H, W) uint8; ``probabilities`` (K, H, W) float32 in [0, 1] or None.

    ``model`` and ``version`` name the model that answered (the version
    resolved by the server); ``provider`` is the inference backend that ran it.
    """

    labels: np.ndarray
    probabilities: Optional[np.ndarray]
    model: str
    version: str
    provider: str

    @classmethod
    def from_proto(cls, response: segmenter_pb2.PredictResponse) -> "PredictResult":
        probabilities = None
        if response.HasField("probabilities"):
            probabilities = probabilities_from_proto(response.probabilities)
        return cls(
            labels=class_map_from_proto(response.class_map),
            probabilities=probabilities,
            model=response.model.name,
            version=response.model.version,
            provider=response.execution_provider,
        )


@dataclass(frozen=True)
class RasterPrediction:
    """The outcome of ``predict_raster``.

    Exactly one of ``output_uri`` (the GeoTIFF the server wrote) and
    ``labels`` (the (H, W) uint8 class map, assembled from streamed tiles) is
    set. ``geo`` is the class map's georeferencing, None when the source had none.
    ``window`` is where the class map lies in the source, ``(row_off, col_off,
    height, width)`` in its pixels; ``vector_uri`` the polygons written, if
    asked for, and ``vector_features`` how many. ``tiles_skipped`` counts the
    model tiles left out because the source had no data there (those pixels
    are ``nodata_class``, 255); ``confidence_uri`` is the confidence GeoTIFF
    written, if asked for.
    """

    output_uri: str
    labels: Optional[np.ndarray]
    height: int
    width: int
    geo: Optional[GeoReference]
    window: tuple[int, int, int, int] = (0, 0, 0, 0)
    vector_uri: str = ""
    vector_features: int = 0
    tiles_skipped: int = 0
    nodata_class: int = 255
    confidence_uri: str = ""


class SegmenterClient(ServiceClient):
    """A client of the Segmenter service; use it as a context manager to close its channel.

    ``timeout`` bounds each call, retries included, in seconds (None: no
    deadline); ``raster_timeout`` does the same for ``predict_raster``.
    ``retries`` is the number of retries after an UNAVAILABLE answer, or a
    RetryPolicy. With ``wait_for_ready`` (the default) a call made while the
    server is starting waits for it, within its deadline; without, it fails
    at once when the server cannot be reached.
    ``token`` is sent as ``authorization: Bearer <token>``, ``caller`` as
    ``caller`` metadata. Failures raise subclasses of ``dial_client.DialError``.
    """

    STUB = segmenter_pb2_grpc.SegmenterStub
    SERVICE = segmenter_pb2.DESCRIPTOR.services_by_name["Segmenter"].full_name

    def __init__(
        self,
        target: str,
        *,
        timeout: Optional[float] = 30.0,
        raster_timeout: Optional[float] = 3600.0,
        retries: Union[int, RetryPolicy] = 3,
        token: Optional[str] = None,
        tls: Optional[TlsConfig] = None,
        caller: Optional[str] = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        wait_for_ready: bool = True,
    ) -> None:
        super().__init__(target, timeout=timeout, retries=retries, token=token, tls=tls, caller=caller,
                         max_message_bytes=max_message_bytes, wait_for_ready=wait_for_ready)
        self._raster_timeout = raster_timeout

    def predict(
        self,
        image: np.ndarray,
        clicks: Iterable[AnyClick] = (),
        *,
        model: str,
        version: Optional[str] = None,
        return_probabilities: bool = False,
        geo: Optional[GeoReference] = None,
        timeout: Optional[float] = None,
    ) -> PredictResult:
        """Segment an (H, W, B) or (H, W) uint8/uint16 image given the user's clicks.

        ``geo`` georeferences the image, which MapClicks need.
        """
        request = predict_request(image, clicks, model=model, version=version,
                                  return_probabilities=return_probabilities, geo=geo)
        try:
            return PredictResult.from_proto(self._call("Predict", request, timeout))
        except DialError as error:
            raise hint_image_layout(error, np.shape(image)) from error.__cause__

    def predict_raster(
        self,
        source: RasterSource,
        *,
        model: str,
        version: Optional[str] = None,
        clicks: Iterable[AnyClick] = (),
        output_uri: Optional[str] = None,
        on_progress: Optional[ProgressCallback] = None,
        geo: Optional[GeoReference] = None,
        tile_px: int = DEFAULT_TILE_PX,
        timeout: Optional[float] = None,
        window: Optional[tuple[int, int, int, int]] = None,
        aoi: Optional[tuple[float, float, float, float]] = None,
        aoi_crs: str = "",
        source_bands: Iterable[int] = (),
        source_range: Optional[tuple[float, float]] = None,
        vector_uri: Optional[str] = None,
        overwrite: bool = False,
        confidence_uri: Optional[str] = None,
        nodata: Optional[float] = None,
    ) -> RasterPrediction:
        """Segment a large raster: a GeoTIFF path/URI read by the server, or an array streamed as tiles.

        With ``output_uri`` the server writes a GeoTIFF there; otherwise the
        class map comes back as tiles and is returned as ``labels``.
        ``on_progress(tiles_done, tiles_total)`` is called as the server
        reports progress. ``geo`` georeferences an array source (a GeoTIFF
        carries its own); ``tile_px`` sizes the tiles an array is sent in.

        ``window`` ``(row_off, col_off, height, width)`` or ``aoi`` ``(min_x,
        min_y, max_x, max_y)`` (in the raster's CRS, or in ``aoi_crs``)
        segments only that part. ``source_bands`` (1-based, repeats allowed:
        ``[1, 1, 1]`` feeds one band to a 3-band model) and ``source_range``
        (``(0, 2047)`` for 11-bit values into a uint8 model) map the source
        to the model's bands and range. ``vector_uri`` (.gpkg or .geojson)
        has the server write the class map's polygons there as well.

        ``overwrite`` lets the outputs replace existing files (otherwise
        AlreadyExists, and the files stay as they were). ``confidence_uri``
        has the server write, in the same pass, each pixel's top class
        probability as a uint8 GeoTIFF whose scale (1/254) a GIS applies
        itself, 255 being nodata. ``nodata`` is an array source's nodata
        value (a GeoTIFF declares its own): pixels with it in every band come
        back as 255.
        """
        header = segmenter_pb2.PredictRasterHeader(
            model=_model_ref(model, version),
            clicks=[click.to_proto() for click in clicks],
        )
        if output_uri:
            header.output_uri = output_uri
        else:
            header.stream_tiles = True
        if window is not None and aoi is not None:
            raise ValueError("give window or aoi, not both")
        if window is not None:
            row_off, col_off, height, width = window
            header.window.CopyFrom(common_pb2.Window(row_off=row_off, col_off=col_off, height=height, width=width))
        if aoi is not None:
            min_x, min_y, max_x, max_y = aoi
            header.aoi.CopyFrom(common_pb2.MapBounds(min_x=min_x, min_y=min_y, max_x=max_x, max_y=max_y,
                                                     crs=aoi_crs))
        header.source_bands.extend(source_bands)
        if source_range is not None:
            header.source_range.CopyFrom(segmenter_pb2.ValueRange(min=source_range[0], max=source_range[1]))
        if vector_uri:
            header.vector_uri = vector_uri
        header.overwrite = overwrite
        if confidence_uri:
            header.confidence_uri = confidence_uri

        if isinstance(source, np.ndarray):
            array = source[:, :, np.newaxis] if source.ndim == 2 else source
            if array.ndim != 3:
                raise ValueError(f"raster arrays must be (H, W) or (H, W, B), got shape {source.shape}")
            if tile_px < 1:
                raise ValueError(f"tile_px must be >= 1, got {tile_px}")
            height, width, bands = array.shape
            header.tiles.CopyFrom(
                segmenter_pb2.TiledRasterHeader(
                    height=height, width=width, bands=bands, dtype=data_type_of(array.dtype)
                )
            )
            if geo is not None:
                header.tiles.geo.CopyFrom(geo.to_proto())
            if nodata is not None:
                header.tiles.nodata = nodata
        elif isinstance(source, (str, os.PathLike)):
            if geo is not None:
                raise ValueError("geo georeferences array sources; a GeoTIFF carries its own")
            if nodata is not None:
                raise ValueError("nodata describes array sources; a GeoTIFF declares its own")
            array = None
            header.raster.uri = os.fspath(source)
        else:
            raise TypeError(f"source must be a path, a URI or a numpy array, not {type(source).__name__}")

        def requests() -> Iterator[segmenter_pb2.PredictRasterRequest]:
            yield segmenter_pb2.PredictRasterRequest(header=header)
            if array is not None:
                yield from _tile_requests(array, tile_px)

        # A retry after UNAVAILABLE (a server restarted mid-job) starts the job
        # again: tiles are kept per attempt and the server writes output_uri
        # atomically, so the caller sees one whole result either way; only
        # on_progress goes back to 0.
        def attempt(options) -> RasterPrediction:
            tiles: list[segmenter_pb2.ClassMapTile] = []
            result: Optional[segmenter_pb2.RasterResult] = None
            for response in self._stub.PredictRaster(requests(), **options):
                kind = response.WhichOneof("payload")
                if kind == "progress" and on_progress is not None:
                    on_progress(response.progress.tiles_done, response.progress.tiles_total)
                elif kind == "class_map_tile":
                    tiles.append(response.class_map_tile)
                elif kind == "result":
                    result = response.result
            if result is None:
                raise Internal(grpc.StatusCode.INTERNAL, "PredictRaster stream ended without a result")
            return _raster_prediction(result, tiles)

        return self._connection.call(attempt, self._raster_timeout if timeout is None else timeout)

    def list_models(self, *, page_size: int = 0, timeout: Optional[float] = None) -> list[ModelInfo]:
        """Every model version the server offers, following page tokens to the end."""
        models: list[ModelInfo] = []
        page_token = ""
        while True:
            response = self._call("ListModels", list_models_request(page_size, page_token), timeout)
            models.extend(ModelInfo.from_proto(m) for m in response.models)
            page_token = response.next_page_token
            if not page_token:
                return models

    def get_model(self, name: str, version: Optional[str] = None, *, timeout: Optional[float] = None) -> ModelInfo:
        """One model version's metadata; the latest version when ``version`` is None."""
        request = segmenter_pb2.GetModelRequest(model=_model_ref(name, version))
        return ModelInfo.from_proto(self._call("GetModel", request, timeout))

    def is_model_ready(self, name: str, version: Optional[str] = None, *, timeout: Optional[float] = None) -> bool:
        """Whether the server has ``name`` (at ``version``, or its latest) loaded and able to serve now."""
        try:
            return self.get_model(name, version, timeout=timeout).ready
        except NotFound:
            return False


def predict_request(
    image: np.ndarray,
    clicks: Iterable[AnyClick],
    *,
    model: str,
    version: Optional[str],
    return_probabilities: bool,
    geo: Optional[GeoReference],
) -> segmenter_pb2.PredictRequest:
    """The Predict request both the blocking and the asyncio client send."""
    return segmenter_pb2.PredictRequest(
        model=_model_ref(model, version),
        image=image_to_proto(image, geo),
        clicks=[click.to_proto() for click in clicks],
        return_probabilities=return_probabilities,
    )


def list_models_request(page_size: int, page_token: str) -> segmenter_pb2.ListModelsRequest:
    return segmenter_pb2.ListModelsRequest(page_size=page_size, page_token=page_token)


def _model_ref(name: str, version: Optional[str]) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(name=name, version=version or "")


def _tile_requests(array: np.ndarray, tile_px: int) -> Iterator[segmenter_pb2.PredictRasterRequest]:
    """The array as ImageTile requests, row-major, encoded lazily to bound memory."""
    height, width = array.shape[:2]
    for row_off in range(0, height, tile_px):
        for col_off in range(0, width, tile_px):
            pixels = array[row_off : row_off + tile_px, col_off : col_off + tile_px]
            window = common_pb2.Window(
                row_off=row_off, col_off=col_off, height=pixels.shape[0], width=pixels.shape[1]
            )
            tile = segmenter_pb2.ImageTile(window=window, image=image_to_proto(pixels))
            yield segmenter_pb2.PredictRasterRequest(tile=tile)


def _raster_prediction(
    result: segmenter_pb2.RasterResult, tiles: list[segmenter_pb2.ClassMapTile]
) -> RasterPrediction:
    geo = GeoReference.from_proto(result.geo)
    w = result.window
    extra = {"window": (w.row_off, w.col_off, w.height, w.width), "vector_uri": result.vector_uri,
             "vector_features": result.vector_features, "tiles_skipped": result.tiles_skipped,
             "nodata_class": result.nodata_class, "confidence_uri": result.confidence_uri}
    if result.output_uri:
        return RasterPrediction(result.output_uri, None, result.height, result.width, geo, **extra)
    labels = np.zeros((result.height, result.width), dtype=np.uint8)
    covered = np.zeros_like(labels, dtype=bool)
    for tile in tiles:
        w = tile.window
        where = f"(row_off={w.row_off}, col_off={w.col_off}, height={w.height}, width={w.width})"
        if w.row_off + w.height > result.height or w.col_off + w.width > result.width:
            raise Internal(grpc.StatusCode.INTERNAL, f"class map tile {where} lies outside the raster")
        if (tile.class_map.height, tile.class_map.width) != (w.height, w.width):
            raise Internal(grpc.StatusCode.INTERNAL, f"class map tile does not match its window {where}")
        labels[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] = class_map_from_proto(
            tile.class_map
        )
        covered[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] = True
    if not covered.all():
        raise Internal(grpc.StatusCode.INTERNAL, "streamed class map tiles do not cover the raster")
    return RasterPrediction("", labels, result.height, result.width, geo, **extra)
