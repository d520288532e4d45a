"""``dial.v1.Segmenter``: protobuf in, core inference, protobuf out."""
from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np

from dial.clicks import Click
from dial.errors import AlreadyExists, Exhausted
from dial.imagery.outputs import sidecar_paths
from dial.imagery.vector import FORMATS as VECTOR_FORMATS, output_driver
from dial.inference.classwise import class_argmax
from dial.inference.tiling import array_reader, iter_blended_rows
from dial.model.repository import ModelRef
from dial_client.wire import (
    DTYPE_NAMES, class_map_to_proto, common_pb2, probabilities_to_proto, quantise_probabilities, segmenter_pb2,
    segmenter_pb2_grpc,
)
from dial_services.common.convert import model_to_proto
from dial_services.common.errors import Violations, invalid_argument
from dial_services.common.metrics import ServiceMetrics
from dial_services.common.sources import Sources, band_mapping_from_proto, check_source
from dial_services.common.uri_policy import UriPolicy
from dial_services.common.validation import (
    clicks_from_proto, geo_from_proto, image_from_proto, model_ref_from_proto, page_bounds,
)
from dial_services.segmenter.batching import MemoryBudget, OverBudget, tiler_bytes
from dial_services.segmenter.config import SegmenterConfig
from dial_services.segmenter.models import ModelRegistry
from dial_services.segmenter.raster_job import RasterSource, run_raster, spool_tiles, with_polygons

SERVICE_NAME = segmenter_pb2.DESCRIPTOR.services_by_name["Segmenter"].full_name
MiB = 1024 * 1024
# Room in a PredictResponse for everything but the pixels: tags, lengths, the model and its provider.
REPLY_OVERHEAD_BYTES = 4096
VECTOR_SUFFIXES = tuple(VECTOR_FORMATS)


def model_ref(proto: common_pb2.ModelRef, field: str = "model") -> ModelRef:
    return model_ref_from_proto(proto, field)


def deadline_of(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class SegmenterServicer(segmenter_pb2_grpc.SegmenterServicer):
    def __init__(self, config: SegmenterConfig, registry: ModelRegistry, metrics: ServiceMetrics):
        self.config = config
        self.registry = registry
        self.policy = UriPolicy.of(config)
        self.sources = Sources(self.policy, config.max_image_px)
        self.tiles = metrics.counter("dial_tiles_processed", "tiles run through a model", ["model", "version"])
        self.tiles_skipped = metrics.counter(
            "dial_tiles_skipped", "raster tiles left out without running the model, all their pixels nodata",
            ["model", "version"])
        self.budget = MemoryBudget(config.max_inflight_bytes)
        self.budget_refusals = metrics.counter(
            "dial_memory_budget_refusals", "calls refused because their memory did not fit the budget", ["method"])
        metrics.gauge("dial_memory_budget_in_use_bytes", "memory held by calls in flight, as estimated"
                      ).set_function(lambda: self.budget.in_use)

    @contextmanager
    def _memory(self, nbytes: int, method: str):
        try:
            self.budget.acquire(nbytes)
        except OverBudget as over:
            self.budget_refusals.labels(method).inc()
            if over.wanted > over.limit:
                raise Exhausted(
                    f"this request needs about {over.wanted / MiB:.0f} MiB of working memory, more than the "
                    f"{over.limit / MiB:.0f} MiB this server gives all calls together; send a smaller image, or "
                    "use PredictRaster") from None
            raise Exhausted(
                f"the server is busy with other large requests ({over.in_use / MiB:.0f} of {over.limit / MiB:.0f} "
                f"MiB of working memory in use, this request needs {over.wanted / MiB:.0f} MiB); retry with "
                "backoff") from None
        try:
            yield
        finally:
            self.budget.release(nbytes)

    def _check_reply_fits(self, height: int, width: int, n_classes: int, probabilities: bool) -> None:
        """Refuse, before any work, a reply larger than the server may send."""
        planes = 1 + (n_classes if probabilities else 0)
        reply = height * width * planes + REPLY_OVERHEAD_BYTES
        limit = self.config.max_message_bytes
        if reply > limit:
            what = f"labels and {n_classes} class probabilities" if probabilities else "labels"
            raise Exhausted(
                f"the reply for a {height} × {width} (height × width) image ({what}) would be {reply / MiB:.1f} MiB, "
                f"above this server's {limit / MiB:.0f} MiB message limit; use PredictRaster (stream_tiles or "
                f"output_uri) for "
                f"an image this large{', or leave return_probabilities off' if probabilities else ''}")

    def Predict(self, request: segmenter_pb2.PredictRequest, context) -> segmenter_pb2.PredictResponse:
        model = self.registry.get(model_ref(request.model))
        manifest = model.manifest
        v = Violations()
        image = image_from_proto(request.image, "image", self.config.max_image_px, manifest, v)
        geo = geo_from_proto(request.image.geo, "image.geo", v)
        clicks = clicks_from_proto(request.clicks, "clicks", request.image.height, request.image.width, manifest,
                                   geo, self.config.max_clicks, v)
        v.raise_if_any()
        height, width = image.shape[:2]
        with_probabilities = request.return_probabilities
        self._check_reply_fits(height, width, manifest.n_classes, with_probabilities)
        # Held for the whole call: the request, the label and probability planes, the reply being built
        # (its bytes, then its serialised copy) and the tiler's working rows.
        planes = 1 + (manifest.n_classes if with_probabilities else 0)
        working = (2 * image.nbytes + 3 * height * width * planes
                   + tiler_bytes(manifest, height, width, self.config.max_batch_size, with_probabilities))
        with self._memory(working, "Predict"):
            return self._predict(model, image, clicks, with_probabilities, context)

    def _predict(self, model, image, clicks, with_probabilities: bool, context) -> segmenter_pb2.PredictResponse:
        manifest = model.manifest
        predictor = model.bound(deadline_of(context))
        tiles = self.tiles.labels(manifest.name, manifest.version)
        height, width = image.shape[:2]
        labels = np.empty((height, width), dtype=np.uint8)
        probs_out = None
        reduce_rows = None
        counted = [0]

        def count_tiles(done: int, total: int) -> None:
            # The tiler reports once per batch, with the tiles done so far.
            tiles.inc(done - counted[0])
            counted[0] = done

        if with_probabilities:
            # Quantised block by block (on the blending thread, as the argmax): a float32 copy of the
            # whole image's probabilities would be 4x the reply's size.
            probs_out = np.empty((manifest.n_classes, height, width), dtype=np.uint8)
            reduce_rows = lambda block: (quantise_probabilities(block), class_argmax(block))  # noqa: E731
        for top, bottom, rows in iter_blended_rows(predictor, array_reader(image), height, width, clicks,
                                                   batch_size=self.config.max_batch_size,
                                                   on_tile=count_tiles,
                                                   output="probabilities" if probs_out is not None else "labels",
                                                   reduce_rows=reduce_rows):
            if probs_out is not None:
                probs_out[:, top:bottom], labels[top:bottom] = rows
            else:
                labels[top:bottom] = rows
        response = segmenter_pb2.PredictResponse(
            class_map=class_map_to_proto(labels),
            model=common_pb2.ModelRef(name=manifest.name, version=manifest.version),
            execution_provider=model.provider,
        )
        if probs_out is not None:
            response.probabilities.CopyFrom(probabilities_to_proto(probs_out))
        return response

    def PredictRaster(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("payload") != "header":
            raise invalid_argument([("request[0]", "the first message must carry the header")])
        header = first.header
        model = self.registry.get(model_ref(header.model, "header.model"))
        manifest = model.manifest
        output = vector = confidence = None
        if header.WhichOneof("output") == "output_uri":
            output = self.policy.writable(header.output_uri, "header.output_uri", inputs=[header.raster.uri],
                                          overwrite=header.overwrite, overwrite_field="header.overwrite")
        elif not header.stream_tiles:
            raise invalid_argument([("header.output", "set output_uri or stream_tiles")])
        if header.confidence_uri:
            if header.confidence_uri == header.output_uri:
                raise invalid_argument([("header.confidence_uri", "names the class map's output_uri; choose "
                                                                  "another name")])
            confidence = self.policy.writable(header.confidence_uri, "header.confidence_uri",
                                              inputs=[header.raster.uri], overwrite=header.overwrite,
                                              overwrite_field="header.overwrite")
        if header.vector_uri:
            vector = self.policy.writable(header.vector_uri, "header.vector_uri", suffixes=VECTOR_SUFFIXES,
                                          kind="GeoPackage or GeoJSON files", inputs=[header.raster.uri],
                                          overwrite=header.overwrite, overwrite_field="header.overwrite")
        scratch = Path(tempfile.gettempdir())
        which = header.WhichOneof("source")
        if which == "raster":
            source = RasterSource(self.sources.open_view(header.raster.uri, "header.raster", manifest,
                                                         self.config.max_raster_px, header))
        elif which == "tiles":
            v = Violations()
            check_source(v, "header", "header.tiles", header.tiles.bands, DTYPE_NAMES.get(header.tiles.dtype),
                         manifest, band_mapping_from_proto(header, manifest))
            v.raise_if_any()
            source = spool_tiles(header.tiles, request_iterator, scratch, self.config.max_raster_px,
                                 self.config.max_image_px)
            try:
                source.reader = self.sources.model_view(source.reader, header, "header.tiles", manifest)
            except BaseException:
                source.close()
                raise
        else:
            raise invalid_argument([("header.source", "set raster or tiles")])
        # Polygons are traced from a class-map GeoTIFF: the output, or a scratch one when tiles are streamed.
        class_map = output
        try:
            info = source.reader.info
            if vector is not None and output_driver(vector) == "GeoJSON" and not (info.geo and info.geo.crs):
                raise invalid_argument([("header.vector_uri", "GeoJSON (RFC 7946) is WGS 84 longitude/latitude, "
                                                              "and the raster has no CRS; write a .gpkg instead")])
            clicks = self._raster_clicks(header, source, manifest)
            tiles = self.tiles.labels(manifest.name, manifest.version)
            # A confidence band blends normalised logits, which costs what probabilities do.
            working = tiler_bytes(manifest, info.height, info.width, self.config.raster_batch_size,
                                  confidence is not None)
            if vector is not None and class_map is None:
                fd, name = tempfile.mkstemp(prefix="dial-classmap-", suffix=".tif", dir=scratch)
                os.close(fd)
                class_map = Path(name)
            with self._memory(working, "PredictRaster"):
                responses = run_raster(model.bound(deadline_of(context)), source, clicks, output=class_map,
                                       stream_tiles=header.stream_tiles, deadline=deadline_of(context),
                                       batch_size=self.config.raster_batch_size, on_tiles=tiles.inc,
                                       on_skipped=self.tiles_skipped.labels(manifest.name, manifest.version).inc,
                                       confidence=confidence,
                                       # The scratch class map is a file of our own, made empty above.
                                       overwrite=header.overwrite or class_map != output)
                if vector is not None:
                    responses = with_polygons(responses, class_map, vector, manifest.class_names)
                try:
                    for response in responses:
                        if output is None and response.WhichOneof("payload") == "result":
                            response.result.output_uri = ""  # the scratch class map is not the caller's
                        yield response
                except FileExistsError:
                    # Another writer created an output while this call ran; it is left as that writer made it.
                    raise AlreadyExists("an output or one of its sidecars (.aux.xml, .qml) exists, or appeared "
                                        "while the call ran; set header.overwrite to replace them, or choose "
                                        "another name") from None
        finally:
            source.close()
            if class_map is not None and class_map != output:
                for scratch_file in (class_map, *sidecar_paths(class_map)):
                    scratch_file.unlink(missing_ok=True)

    def _raster_clicks(self, header, source: RasterSource, manifest) -> list[Click]:
        """The header's clicks (in the full raster's pixels, or on the map) in the pixels of the job's window."""
        full = source.reader.reader.info
        window = source.window
        v = Violations()
        clicks = clicks_from_proto(header.clicks, "header.clicks", full.height, full.width, manifest, full.geo,
                                   self.config.max_clicks, v)
        v.raise_if_any()
        shifted = []
        for i, click in enumerate(clicks):
            row, col = click.row - window.row_off, click.col - window.col_off
            v.check(0 <= row < window.height and 0 <= col < window.width, f"header.clicks[{i}]",
                    f"({click.row}, {click.col}) is outside the window being segmented, rows {window.row_off}.."
                    f"{window.bottom - 1} and columns {window.col_off}..{window.right - 1}")
            shifted.append(Click(row, col, click.class_id))
        v.raise_if_any()
        return shifted

    def ListModels(self, request, context) -> segmenter_pb2.ListModelsResponse:
        entries = [(name, version) for name in self.registry.repo.names()
                   for version in self.registry.repo.versions(name)]
        start, stop = page_bounds(request.page_size, request.page_token, len(entries))
        models = [self._model_proto(ModelRef(n, v)) for n, v in entries[start:stop]]
        return segmenter_pb2.ListModelsResponse(models=models,
                                                next_page_token=str(stop) if stop < len(entries) else "")

    def GetModel(self, request, context) -> common_pb2.Model:
        return self._model_proto(model_ref(request.model))

    def _model_proto(self, ref: ModelRef) -> common_pb2.Model:
        name, version = self.registry.repo.resolve(ref)
        if self.registry.is_loaded(name, version):
            loaded = self.registry.get(ModelRef(name, version))
            return model_to_proto(loaded.manifest, loaded.provider, ready=True)
        return model_to_proto(self.registry.repo.manifest(ModelRef(name, version)), "", ready=False)
