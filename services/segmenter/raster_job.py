"""The whole-raster RPC: a raster (by reference or as a tile stream) in, a class map out.

Inputs stream through the core tiler (512 px tiles, 128 px overlap, blended)
one tile row at a time, and finished rows go straight to the output GeoTIFF
or back to the client as tiles, so memory is bounded by one tile row however
large the raster is. A streamed input is first spooled to a temporary
GeoTIFF on disk: the tiler needs overlapping windows, which arrive in no
particular order.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from dial.clicks import Click
from dial.imagery.georef import Window
from dial.imagery.outputs import NODATA_CLASS, PROBABILITY_STEPS, Category, CogWriter
from dial.imagery.raster import GeoTiffWriter, RasterReader
from dial.imagery.vector import vectorize_file
from dial.imagery.view import RasterView
from dial.inference.classwise import confidence_from_logits
from dial.inference.tiling import iter_blended_rows
from dial_client.wire import DTYPE_NAMES, class_map_to_proto, segmenter_pb2, wire_dtype
from dial_services.common.call_guard import DeadlineExpired
from dial_services.common.convert import geo_to_proto
from dial_services.common.errors import Violations, invalid_argument
from dial_services.common.sources import window_to_proto
from dial_services.common.validation import check_shape, geo_from_proto, image_from_proto, wire_decoded

STREAM_CHUNK_ROWS = 256


@dataclass
class RasterSource:
    """The pixels a job reads (a view of the source: its window, its bands as the model's) and the spooled
    file behind them, if the client streamed them."""

    reader: RasterReader | RasterView
    spool: Path | None = None

    @property
    def window(self) -> Window:
        """Where the pixels lie in the source."""
        return getattr(self.reader, "window", self.reader.info.window)

    def close(self) -> None:
        self.reader.close()
        if self.spool is not None:
            self.spool.unlink(missing_ok=True)


class TileCoverage:
    """The windows of a tile stream so far, refusing any that overlaps an earlier one.

    Tiles must not overlap (segmenter.proto), so the areas of accepted tiles
    add up to the raster's only when they cover all of it: without this check,
    the same half sent twice passed as the whole. Windows are indexed by the
    ``CELL_PX`` grid cells they touch, so each new window is compared only with
    its neighbours, and memory grows with the tiles, not the raster's pixels.
    """

    CELL_PX = 256

    def __init__(self) -> None:
        self.covered = 0
        self._cells: dict[tuple[int, int], list[tuple[int, int, int, int, int]]] = {}

    def add(self, index: int, row: int, col: int, height: int, width: int) -> int | None:
        """Record a window; the index of an earlier window it overlaps instead, if any."""
        bottom, right = row + height, col + width
        cells = [(i, j) for i in range(row // self.CELL_PX, (bottom - 1) // self.CELL_PX + 1)
                 for j in range(col // self.CELL_PX, (right - 1) // self.CELL_PX + 1)]
        for cell in cells:
            for earlier, top, left, low, far in self._cells.get(cell, ()):
                if top < bottom and row < low and left < right and col < far:
                    return earlier
        entry = (index, row, col, bottom, right)
        for cell in cells:
            self._cells.setdefault(cell, []).append(entry)
        self.covered += height * width
        return None


def spool_tiles(header: segmenter_pb2.TiledRasterHeader, requests: Iterator, scratch: Path,
                max_px: int, max_tile_px: int) -> RasterSource:
    """Write streamed ``ImageTile`` messages into a temporary GeoTIFF."""
    v = Violations()
    wire_decoded(v, "header.tiles", wire_dtype, header.dtype)
    check_shape(v, "header.tiles", header.height, header.width, header.bands, max_px)
    geo = geo_from_proto(header.geo, "header.tiles.geo", v)
    nodata = header.nodata if header.HasField("nodata") else None
    if nodata is not None and header.dtype in DTYPE_NAMES:
        top = np.iinfo(DTYPE_NAMES[header.dtype]).max
        v.check(np.isfinite(nodata) and nodata == int(nodata) and 0 <= nodata <= top, "header.tiles.nodata",
                f"must be an integer from 0 to {top}, a value the tiles' dtype holds")
    v.raise_if_any()
    fd, name = tempfile.mkstemp(prefix="dial-spool-", suffix=".tif", dir=scratch)
    os.close(fd)
    path = Path(name)
    coverage = TileCoverage()
    try:
        with GeoTiffWriter(path, height=header.height, width=header.width, bands=header.bands,
                           dtype=DTYPE_NAMES[header.dtype], geo=geo, nodata=nodata) as writer:
            for index, request in enumerate(requests):
                field = f"request[{index + 1}].tile"
                if request.WhichOneof("payload") != "tile":
                    raise invalid_argument([(f"request[{index + 1}]", "after the header, only tiles may follow")])
                tile, window = request.tile, request.tile.window
                array = image_from_proto(tile.image, f"{field}.image", max_tile_px)
                bad = Violations()
                bad.check(tile.image.dtype == header.dtype and tile.image.bands == header.bands, f"{field}.image",
                          "dtype and bands must match the header")
                bad.check((tile.image.height, tile.image.width) == (window.height, window.width), f"{field}.window",
                          "window size must match the tile image")
                bad.check(window.row_off + window.height <= header.height
                          and window.col_off + window.width <= header.width, f"{field}.window",
                          f"window lies outside the {header.height} × {header.width} (height × width) raster")
                bad.raise_if_any()
                earlier = coverage.add(index + 1, window.row_off, window.col_off, window.height, window.width)
                if earlier is not None:
                    raise invalid_argument([(f"{field}.window", f"overlaps the window of request[{earlier}]; tiles "
                                                                "must not overlap")])
                writer.write(array, window.row_off, window.col_off)
        if coverage.covered < header.height * header.width:
            raise invalid_argument([("tiles", f"tiles cover {coverage.covered} of {header.height * header.width} "
                                              "pixels; send the whole raster")])
        return RasterSource(RasterReader(path), spool=path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def run_raster(predictor, source: RasterSource, clicks: list[Click], *, output: Path | None, stream_tiles: bool,
               deadline: float | None, batch_size: int, on_tiles=None, on_skipped=None,
               confidence: Path | None = None, overwrite: bool = False
               ) -> Iterator[segmenter_pb2.PredictRasterResponse]:
    """Stream the class map's rows to ``output`` (a COG with the model's colours and class names) and/or back
    as tiles, and the confidence to ``confidence``. Pixels with no data in the source get NODATA_CLASS, and
    tiles with no data at all are not run (``on_skipped(n)``; ``on_tiles(n)`` counts those that were)."""
    reader = source.reader
    info = reader.info
    manifest = predictor.manifest
    progress = {"done": 0, "total": 0, "skipped": 0, "batch_skipped": 0}
    masked = reader.masked

    def skipped(n: int) -> None:
        progress["skipped"] += n
        progress["batch_skipped"] = n
        if on_skipped is not None:
            on_skipped(n)

    def on_tile(done: int, total: int) -> None:
        ran = done - progress["done"] - progress["batch_skipped"]
        progress["done"], progress["total"], progress["batch_skipped"] = done, total, 0
        if on_tiles is not None and ran:
            on_tiles(ran)

    def no_data(row: int, col: int, height: int, width: int) -> bool:
        return not reader.valid(row, col, height, width).any()

    # Confidence needs the blended logits; a class map alone needs only their argmax.
    rows_as = dict(output="logits", reduce_rows=confidence_from_logits) if confidence is not None else \
        dict(output="labels")
    # The outputs appear whole when the last row is written, or not at all: a call that fails, is
    # cancelled or is killed never leaves half a GeoTIFF under the caller's name.
    with contextlib.ExitStack() as finished:
        writer = confidence_writer = None
        if output is not None:
            writer = finished.enter_context(CogWriter(
                output, height=info.height, width=info.width, geo=info.geo, nodata=NODATA_CLASS,
                categories=[Category(c.name, c.colour) for c in manifest.classes], overwrite=overwrite))
        if confidence is not None:
            confidence_writer = finished.enter_context(CogWriter(
                confidence, height=info.height, width=info.width, geo=info.geo, nodata=NODATA_CLASS,
                scale_offset=(1.0 / PROBABILITY_STEPS, 0.0), resampling="average", overwrite=overwrite))
        rows = iter_blended_rows(predictor, reader.read, info.height, info.width, clicks,
                                 batch_size=batch_size, on_tile=on_tile, skip_tile=no_data if masked else None,
                                 on_skipped=skipped, **rows_as)
        for top, bottom, block in rows:
            if deadline is not None and time.monotonic() > deadline:
                raise DeadlineExpired()
            if confidence is not None:
                scores, labels = block
                level = np.rint(scores * PROBABILITY_STEPS).astype(np.uint8)
            else:
                labels, level = block, None
            if masked:
                empty = ~reader.valid(top, 0, bottom - top, info.width)
                labels[empty] = NODATA_CLASS
                if level is not None:
                    level[empty] = NODATA_CLASS
            if writer is not None:
                writer.write(labels, top, 0)
            if confidence_writer is not None:
                confidence_writer.write(level, top, 0)
            if stream_tiles:
                for start in range(0, bottom - top, STREAM_CHUNK_ROWS):
                    chunk = labels[start : start + STREAM_CHUNK_ROWS]
                    yield segmenter_pb2.PredictRasterResponse(class_map_tile=segmenter_pb2.ClassMapTile(
                        window={"row_off": top + start, "col_off": 0, "height": chunk.shape[0],
                                "width": info.width},
                        class_map=class_map_to_proto(chunk)))
            yield segmenter_pb2.PredictRasterResponse(progress=segmenter_pb2.Progress(
                tiles_done=progress["done"], tiles_total=progress["total"], tiles_skipped=progress["skipped"]))
    yield segmenter_pb2.PredictRasterResponse(result=segmenter_pb2.RasterResult(
        output_uri=str(output) if output is not None else "",
        geo=geo_to_proto(info.geo), height=info.height, width=info.width, window=window_to_proto(source.window),
        tiles_skipped=progress["skipped"], nodata_class=NODATA_CLASS,
        confidence_uri=str(confidence) if confidence is not None else ""))


def with_polygons(responses: Iterator[segmenter_pb2.PredictRasterResponse], class_map: Path, vector: Path,
                  class_names) -> Iterator[segmenter_pb2.PredictRasterResponse]:
    """``run_raster``'s responses, with the class map it wrote to ``class_map`` polygonised into ``vector``
    (dial.imagery.vector: strip by strip, so memory stays bounded) before the result, which names it."""
    for response in responses:
        if response.WhichOneof("payload") == "result":
            response.result.vector_features = vectorize_file(class_map, vector, class_names)
            response.result.vector_uri = str(vector)
        yield response
