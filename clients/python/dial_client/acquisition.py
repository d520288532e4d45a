"""AcquisitionClient: ranked patches, uncertainty maps and annotation queues."""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence, Union

import grpc
import numpy as np

from .adapter import Session, SessionInfo
from .clicks import AnyClick
from .errors import Internal
from .geo import GeoReference
from .transport import DEFAULT_MAX_MESSAGE_BYTES, RetryPolicy, ServiceClient, TlsConfig
from .wire import (
    WireError,
    acquisition_pb2,
    acquisition_pb2_grpc,
    common_pb2,
    image_to_proto,
    uncertainty_from_proto,
)

ImageSource = Union[str, "os.PathLike[str]", np.ndarray]
# An Adapter session is ranked with its adapted weights and its own clicks.
RankSource = Union[ImageSource, Session, SessionInfo]
WindowLike = tuple[int, int, int, int]
REDUCTIONS = {"mean": acquisition_pb2.REDUCTION_MEAN, "sum": acquisition_pb2.REDUCTION_SUM}
JOB_STATES = {v: k for k, v in acquisition_pb2.QueueJob.State.items()}


@dataclass(frozen=True)
class Patch:
    """A ranked patch.

    ``window`` is (row_off, col_off, height, width) in pixels; ``bounds`` is
    (min_x, min_y, max_x, max_y, crs) in map coordinates, or None when the
    source has no georeference; ``hints`` are (row, col) click suggestions.
    """

    rank: int
    score: float
    window: WindowLike
    estimated_click_cost: float
    hints: tuple[tuple[int, int], ...]
    bounds: Optional[tuple[float, float, float, float, str]]

    @classmethod
    def from_proto(cls, p: acquisition_pb2.RankedPatch) -> "Patch":
        b = p.bounds
        bounds = None
        if p.HasField("bounds") and (b.min_x, b.min_y, b.max_x, b.max_y) != (0, 0, 0, 0):
            bounds = (b.min_x, b.min_y, b.max_x, b.max_y, b.crs)
        w = p.window
        return cls(p.rank, p.score, (w.row_off, w.col_off, w.height, w.width), p.estimated_click_cost,
                   tuple((h.row, h.col) for h in p.hints), bounds)


@dataclass(frozen=True)
class QueuedPatch:
    id: str
    raster_uri: str
    patch: Patch


@dataclass(frozen=True)
class RasterFailure:
    """A raster of a queue job that could not be ranked, and why; the job went on without it."""

    uri: str
    reason: str


@dataclass(frozen=True)
class QueueJob:
    """``state`` is one of PENDING, RUNNING, CANCELLING, SUCCEEDED, FAILED, CANCELLED.

    ``failures`` lists the rasters that could not be ranked (of ``rasters_done``); a job with some
    still SUCCEEDS with the others' patches.
    """

    name: str
    state: str
    rasters_done: int
    rasters_total: int
    error_message: str
    failures: tuple[RasterFailure, ...] = ()
    request_id: str = ""

    @classmethod
    def from_proto(cls, job: acquisition_pb2.QueueJob) -> "QueueJob":
        return cls(job.name, JOB_STATES.get(job.state, "STATE_UNSPECIFIED"), job.progress.rasters_done,
                   job.progress.rasters_total, job.error_message,
                   tuple(RasterFailure(f.uri, f.reason) for f in job.failures), job.request_id)

    @property
    def finished(self) -> bool:
        return self.state in ("SUCCEEDED", "FAILED", "CANCELLED")


@dataclass(frozen=True)
class UncertaintyMap:
    """``values`` (H, W) float32 decoded from the server's bytes, or None when written to ``output_uri``.

    ``value_min`` and ``value_max`` are the uncertainties that bytes 0 and 255 stand for, inline or in
    the file (whose band declares them as its offset and scale, so a GIS decodes it alike).
    """

    values: Optional[np.ndarray]
    window: WindowLike
    output_uri: str
    geo: Optional[GeoReference]
    value_min: float = 0.0
    value_max: float = 0.0

    @classmethod
    def from_proto(cls, reply: acquisition_pb2.UncertaintyMap) -> "UncertaintyMap":
        w = reply.window
        values = None
        if not reply.output_uri:
            try:
                values = uncertainty_from_proto(reply)
            except WireError:
                raise Internal(grpc.StatusCode.INTERNAL, "uncertainty map bytes do not match its window") from None
        return cls(values, (w.row_off, w.col_off, w.height, w.width), reply.output_uri,
                   GeoReference.from_proto(reply.geo), reply.value_min, reply.value_max)


class AcquisitionClient(ServiceClient):
    """A client of the Acquisition service; use it as a context manager to close its channel.

    Failures raise subclasses of ``dial_client.DialError``; ``timeout``,
    ``retries``, ``token``, ``tls`` and ``caller`` work as in SegmenterClient.
    """

    STUB = acquisition_pb2_grpc.AcquisitionStub
    SERVICE = acquisition_pb2.DESCRIPTOR.services_by_name["Acquisition"].full_name

    def __init__(self, target: str, *, timeout: Optional[float] = 300.0, retries: Union[int, RetryPolicy] = 3,
                 token: Optional[str] = None, tls: Optional[TlsConfig] = None, caller: Optional[str] = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, wait_for_ready: bool = True) -> None:
        super().__init__(target, timeout=timeout, retries=retries, token=token, tls=tls, caller=caller,
                         max_message_bytes=max_message_bytes, wait_for_ready=wait_for_ready)

    def rank(self, source: RankSource, *, model: Optional[str] = None, version: Optional[str] = None,
             strategy: str = "entropy", patch_size: int = 0, reduction: str = "mean", cost_weighting: bool = False,
             max_patches: int = 0, exclude: Iterable[WindowLike] = (), hint_quantile: float = 0.0,
             geo: Optional[GeoReference] = None, clicks: Iterable[AnyClick] = (),
             timeout: Optional[float] = None) -> list[Patch]:
        """Patches of an image (array), a server-side GeoTIFF (path/URI) or an Adapter session, best first.

        ``clicks`` are the user's clicks so far, as given to the segmenter:
        the ranking then measures the prediction with them, and follows the
        corrections as they are made. ``model`` is required, except for a
        session (a ``Session`` from ``AdapterClient``, or its ``SessionInfo``),
        which is ranked with its model's adapted weights and its own clicks.
        """
        request = rank_request(source, model=model, version=version, strategy=strategy, patch_size=patch_size,
                               reduction=reduction, cost_weighting=cost_weighting, max_patches=max_patches,
                               exclude=exclude, hint_quantile=hint_quantile, geo=geo, clicks=clicks)

        # Patches are kept per attempt, so a retry after UNAVAILABLE starts the ranking again cleanly.
        def attempt(options) -> list[Patch]:
            return [Patch.from_proto(patch) for patch in self._stub.RankPatches(request, **options)]

        return self._connection.call(attempt, timeout)

    def uncertainty_map(self, source: RankSource, *, model: Optional[str] = None, version: Optional[str] = None,
                        strategy: str = "entropy", window: Optional[WindowLike] = None, output_uri: str = "",
                        geo: Optional[GeoReference] = None, overwrite: bool = False,
                        timeout: Optional[float] = None) -> UncertaintyMap:
        """One strategy's per-pixel map; ``window`` reads part of a server-side raster.

        With ``output_uri`` the server writes the map there as a cloud-optimised GeoTIFF whose scale and
        offset decode its bytes; ``overwrite`` lets it replace an existing file (otherwise AlreadyExists).

        As in :meth:`rank`, a session is measured with its adapted weights and clicks, and needs no ``model``.
        """
        request = uncertainty_map_request(source, model=model, version=version, strategy=strategy, window=window,
                                          output_uri=output_uri, geo=geo, overwrite=overwrite)
        return UncertaintyMap.from_proto(self._call("GetUncertaintyMap", request, timeout))

    def submit_queue(self, rasters: Sequence[str], *, model: str, version: Optional[str] = None,
                     strategy: str = "entropy", budget: int = 0, patch_size: int = 0, reduction: str = "mean",
                     cost_weighting: bool = False, hint_quantile: float = 0.0, request_id: Optional[str] = None,
                     timeout: Optional[float] = None) -> QueueJob:
        """Start ranking ``rasters`` (server-side GeoTIFFs) in the background; ``budget`` caps the queue.

        The create is idempotent: it carries ``request_id`` (a new UUID when None), which the client's own
        retries send again, so a retried create returns the job the first try made. Pass your own to retry
        across processes; the same id with another spec is ``AlreadyExists``.
        """
        request = queue_job_request(rasters, model=model, version=version, strategy=strategy, budget=budget,
                                    patch_size=patch_size, reduction=reduction, cost_weighting=cost_weighting,
                                    hint_quantile=hint_quantile, request_id=request_id)
        return QueueJob.from_proto(self._call("CreateQueueJob", request, timeout))

    create_queue_job = submit_queue

    def job(self, name: str, *, timeout: Optional[float] = None) -> QueueJob:
        return QueueJob.from_proto(self._call("GetQueueJob", acquisition_pb2.GetQueueJobRequest(name=name), timeout))

    def jobs(self, *, page_size: int = 0, timeout: Optional[float] = None) -> Iterator[QueueJob]:
        """The caller's queue jobs, newest first (to find a job whose name was lost), page after page."""
        token = ""
        while True:
            request = acquisition_pb2.ListQueueJobsRequest(page_size=page_size, page_token=token)
            reply = self._call("ListQueueJobs", request, timeout)
            yield from (QueueJob.from_proto(job) for job in reply.jobs)
            token = reply.next_page_token
            if not token:
                return

    def cancel(self, name: str, *, timeout: Optional[float] = None) -> QueueJob:
        """Stop a job; it comes back CANCELLING while a raster is still being ranked, then is CANCELLED."""
        request = acquisition_pb2.CancelQueueJobRequest(name=name)
        return QueueJob.from_proto(self._call("CancelQueueJob", request, timeout))

    def queue_page(self, job: Union[str, QueueJob], page_token: str = "", *, page_size: int = 0,
                   timeout: Optional[float] = None) -> tuple[list[QueuedPatch], str]:
        """One page of the job's queue and the token of the next ("" at the end). A job still running
        gives the patches of its rasters ranked so far, and always a token to come back with later."""
        request = acquisition_pb2.ListQueuePatchesRequest(parent=job_name(job), page_size=page_size,
                                                          page_token=page_token)
        reply = self._call("ListQueuePatches", request, timeout)
        return queued_patches(reply), reply.next_page_token

    def queue(self, job: Union[str, QueueJob], *, page_size: int = 0,
              timeout: Optional[float] = None) -> Iterator[list[QueuedPatch]]:
        """The job's queue, one page (a list of patches) at a time: best first once the job has
        SUCCEEDED; while it runs, the rasters ranked so far (see :meth:`queue_page`), up to the last."""
        token = ""
        while True:
            page, token = self.queue_page(job, token, page_size=page_size, timeout=timeout)
            if page or not token:
                yield page
            if not token or not page:
                return

    def mark_done(self, job: Union[str, QueueJob], patch_ids: Iterable[str], *,
                  timeout: Optional[float] = None) -> int:
        """Remove patches from the queue; returns how many were newly marked."""
        request = acquisition_pb2.MarkPatchesDoneRequest(name=job_name(job), patch_ids=list(patch_ids))
        return self._call("MarkPatchesDone", request, timeout).marked_count


# The requests and replies, built and read here for this client and the asyncio one (dial_client.aio).
def rank_request(source: RankSource, *, model: Optional[str], version: Optional[str], strategy: str,
                 patch_size: int, reduction: str, cost_weighting: bool, max_patches: int,
                 exclude: Iterable[WindowLike], hint_quantile: float, geo: Optional[GeoReference],
                 clicks: Iterable[AnyClick]) -> acquisition_pb2.RankPatchesRequest:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {sorted(REDUCTIONS)}, got {reduction!r}")
    request = acquisition_pb2.RankPatchesRequest(
        strategy=strategy, patch_size_px=patch_size, reduction=REDUCTIONS[reduction],
        cost_weighting=cost_weighting, max_patches=max_patches, exclude=[_window(w) for w in exclude],
        hint_quantile=hint_quantile, clicks=[click.to_proto() for click in clicks])
    if model is not None:
        request.model.CopyFrom(_model_ref(model, version))
    _set_source(request, source, geo)
    return request


def uncertainty_map_request(source: RankSource, *, model: Optional[str], version: Optional[str], strategy: str,
                            window: Optional[WindowLike], output_uri: str,
                            geo: Optional[GeoReference], overwrite: bool = False
                            ) -> acquisition_pb2.GetUncertaintyMapRequest:
    request = acquisition_pb2.GetUncertaintyMapRequest(strategy=strategy, output_uri=output_uri,
                                                       overwrite=overwrite)
    if model is not None:
        request.model.CopyFrom(_model_ref(model, version))
    if window is not None:
        if not isinstance(source, (str, os.PathLike)):
            raise ValueError("window applies to server-side rasters; slice the array instead")
        request.raster_window.raster.uri = os.fspath(source)
        request.raster_window.window.CopyFrom(_window(window))
    else:
        _set_source(request, source, geo)
    return request


def queue_job_request(rasters: Sequence[str], *, model: str, version: Optional[str], strategy: str, budget: int,
                      patch_size: int, reduction: str, cost_weighting: bool, hint_quantile: float,
                      request_id: Optional[str]) -> acquisition_pb2.CreateQueueJobRequest:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {sorted(REDUCTIONS)}, got {reduction!r}")
    spec = acquisition_pb2.QueueJobSpec(
        rasters=[common_pb2.RasterReference(uri=os.fspath(r)) for r in rasters], model=_model_ref(model, version),
        strategy=strategy, max_patches=budget, patch_size_px=patch_size, reduction=REDUCTIONS[reduction],
        cost_weighting=cost_weighting, hint_quantile=hint_quantile)
    # Made once per call, so that every retry of this create names the same job.
    return acquisition_pb2.CreateQueueJobRequest(spec=spec, request_id=request_id or str(uuid.uuid4()))


def queued_patches(reply: acquisition_pb2.ListQueuePatchesResponse) -> list[QueuedPatch]:
    return [QueuedPatch(q.id, q.raster_uri, Patch.from_proto(q.patch)) for q in reply.patches]


def job_name(job: Union[str, QueueJob]) -> str:
    return job.name if isinstance(job, QueueJob) else job


def _model_ref(name: str, version: Optional[str]) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(name=name, version=version or "")


def _window(w: WindowLike) -> common_pb2.Window:
    row_off, col_off, height, width = (int(v) for v in w)
    return common_pb2.Window(row_off=row_off, col_off=col_off, height=height, width=width)


def _set_source(request, source: RankSource, geo: Optional[GeoReference]) -> None:
    if isinstance(source, (Session, SessionInfo)):
        if geo is not None:
            raise ValueError("geo georeferences array sources; a session keeps its own")
        request.session = source.name
    elif isinstance(source, np.ndarray):
        request.image.CopyFrom(image_to_proto(source, geo))
    elif isinstance(source, (str, os.PathLike)):
        if geo is not None:
            raise ValueError("geo georeferences array sources; a GeoTIFF carries its own")
        request.raster.uri = os.fspath(source)
    else:
        raise TypeError(f"source must be a path, a URI, a numpy array or an Adapter session, "
                        f"not {type(source).__name__}")
