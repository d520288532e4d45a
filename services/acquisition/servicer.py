"""``dial.v1.Acquisition``: protobuf in, core acquisition, protobuf out."""
from __future__ import annotations

import contextlib
import hashlib
import math
import threading
import time
from typing import Callable, Iterator

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from dial.acquisition import STRATEGIES, AcquisitionModel, get_strategy
from dial.acquisition.ranking import DEFAULT_HINT_QUANTILE, RankedPatch, iter_ranked_patches
from dial.adaptation.disca import DiscaSettings, adapted_network
from dial.errors import AlreadyExists, Damaged, NotFound, Unavailable, Unusable, store_refusal
from dial.imagery.georef import GeoReference, Window
from dial.imagery.outputs import CogWriter
from dial.imagery.raster import WindowedImage
from dial.inference.predictors import OnnxPredictor
from dial.model.repository import ModelRef, ModelRepository
from dial_client.wire import acquisition_pb2, acquisition_pb2_grpc, common_pb2, quantise_scores
from dial_services.acquisition.job_store import JobRecord, JobStore, is_job_id
from dial_services.acquisition.jobs import JobManager
from dial_services.acquisition.sessions import SessionReader
from dial_services.common.auth import caller_identity
from dial_services.common.config import ConfigError, ModelServingConfig
from dial_services.common.convert import geo_to_proto
from dial_services.common.durable import DamagedRecord, StoreWriteError
from dial_services.common.errors import Violations, invalid_argument, quoted
from dial_services.common.metrics import ServiceMetrics
from dial_services.common.session_record import session_id_of
from dial_services.common.sources import Sources, bounds_to_proto, window_from_proto, window_to_proto
from dial_services.common.uri_policy import UriPolicy
from dial_services.common.validation import check_request_id, clicks_from_proto, model_ref_from_proto

SERVICE_NAME = acquisition_pb2.DESCRIPTOR.services_by_name["Acquisition"].full_name
REDUCTIONS = {acquisition_pb2.REDUCTION_UNSPECIFIED: "mean", acquisition_pb2.REDUCTION_MEAN: "mean",
              acquisition_pb2.REDUCTION_SUM: "sum"}


class AcquisitionModels:
    """Models loaded on first use: ONNX Runtime for probabilities, torch for the rest."""

    def __init__(self, config: ModelServingConfig):
        self.config = config
        self.repo = ModelRepository(config.model_repo, cache_dir=config.model_cache)
        self._loaded: dict[tuple[str, str], AcquisitionModel] = {}
        self._lock = threading.Lock()

    def get(self, ref: ModelRef) -> AcquisitionModel:
        key = self.repo.resolve(ref)
        with self._lock:
            if key not in self._loaded:
                ref = ModelRef(*key)
                network, manifest = self.repo.load_torch(ref)
                provider = None if self.config.provider == "auto" else self.config.provider
                predictor = OnnxPredictor(self.repo.onnx_path(ref), manifest, provider=provider,
                                          intra_op_threads=self.config.intra_op_threads)
                self._loaded[key] = AcquisitionModel(manifest, predictor, network.eval(), self.repo.path(ref))
            return self._loaded[key]


def model_ref(proto: common_pb2.ModelRef, field: str) -> ModelRef:
    return model_ref_from_proto(proto, field)


def check_strategy(v: Violations, name: str, field: str) -> None:
    v.check(name in STRATEGIES, field, f"unknown strategy {name!r}; one of {sorted(STRATEGIES)}")


def check_options(v: Violations, prefix: str, patch_size_px: int, reduction: int, hint_quantile: float) -> None:
    v.check(patch_size_px == 0 or patch_size_px >= 16, f"{prefix}patch_size_px",
            "must be 0 (the model's tile) or >= 16")
    v.check(reduction in REDUCTIONS, f"{prefix}reduction", f"unknown reduction {reduction}")
    v.check(hint_quantile == 0 or 0 < hint_quantile < 1, f"{prefix}hint_quantile", "must be 0 (default) or in (0, 1)")


def patch_to_proto(patch: RankedPatch, geo: GeoReference | None) -> acquisition_pb2.RankedPatch:
    return acquisition_pb2.RankedPatch(
        rank=patch.rank, score=patch.score, window=window_to_proto(patch.window),
        bounds=bounds_to_proto(geo, patch.window), estimated_click_cost=patch.estimated_click_cost,
        hints=[common_pb2.PixelPoint(row=row, col=col) for row, col in patch.hints])


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


@contextlib.contextmanager
def job_store_writes(unchanged: str) -> Iterator[None]:
    """A write the job store refuses is the store's fault: it is full, or it cannot be written now (retry),
    with ``unchanged`` saying what stays as it was."""
    try:
        yield
    except StoreWriteError as error:
        raise (store_refusal(error, "job store", unchanged)
               or Unavailable(f"the job store cannot be written now ({error.strerror}); {unchanged}")) from None


def damaged_job(name: str) -> Damaged:
    return Damaged(f"{name} is damaged in the job store and cannot be used; CancelQueueJob removes it, "
                   "then create the job again")


def job_to_proto(job: JobRecord) -> acquisition_pb2.QueueJob:
    return acquisition_pb2.QueueJob(
        name=f"queueJobs/{job.id}", spec=acquisition_pb2.QueueJobSpec.FromString(job.spec),
        state=acquisition_pb2.QueueJob.State.Value(job.state),
        progress=acquisition_pb2.QueueJobProgress(rasters_done=job.rasters_done, rasters_total=len(job.rasters),
                                                  rasters_failed=len(job.failures)),
        error_message=job.error_message, create_time=timestamp(job.create_time),
        update_time=timestamp(job.update_time), request_id=job.request_id,
        failures=[acquisition_pb2.RasterFailure(uri=job.rasters[index], reason=reason)
                  for index, reason in job.failures])


# A page token of a job's patches in the order their rasters finished: "f<finish order>.<rank in raster>".
FINISHED_ORDER = "f"


def page_token_error() -> Exception:
    return invalid_argument([("page_token", "not a token this server issued")])


def finished_order_token(text: str) -> tuple[int, int]:
    try:
        seq, rank = (int(part) for part in text[len(FINISHED_ORDER):].split("."))
    except ValueError:
        raise page_token_error() from None
    if seq < -1 or rank < 0:
        raise page_token_error()
    return seq, rank


class AcquisitionServicer(acquisition_pb2_grpc.AcquisitionServicer):
    def __init__(self, config, models: AcquisitionModels, metrics: ServiceMetrics):
        self.config = config
        self.models = models
        ended = metrics.counter("dial_acquisition_queue_jobs_finished", "queue jobs this replica ended, by state",
                                ["state"])
        taken_over = metrics.counter("dial_acquisition_queue_jobs_taken_over",
                                     "rasters of queue jobs this replica took over from a replica whose lease "
                                     "lapsed")
        try:
            store = JobStore(config.job_store)
        except OSError as error:
            raise ConfigError(f"job_store (DIAL_JOB_STORE): cannot use {config.job_store}: {error.strerror}") from None
        self.jobs = JobManager(store, self._plan_queue_job, workers=config.queue_workers,
                               ttl_seconds=config.job_ttl_seconds, max_live_per_owner=config.max_live_jobs_per_caller,
                               lease_seconds=config.job_lease_seconds,
                               on_end=lambda state: ended.labels(state).inc(), on_take_over=taken_over.inc)
        metrics.gauge("dial_acquisition_queue_jobs_running", "queue jobs this replica is running").set_function(
            self.jobs.running_count)
        metrics.gauge("dial_acquisition_job_store_writable",
                      "1 while the job store takes this replica's writes, 0 once it refuses them (full, read-only)"
                      ).set_function(lambda: float(self.jobs.store_writable))
        metrics.gauge("dial_acquisition_queue_jobs_quarantined",
                      "queue jobs moved aside because their record cannot be read; their owners get DATA_LOSS"
                      ).set_function(store.quarantined_count)
        self.sessions = SessionReader(config.session_store, config.session_ttl_seconds)
        self.policy = UriPolicy.of(config)
        # Ranking holds one map of the source in memory, so the in-memory limit applies to rasters too.
        self.sources = Sources(self.policy, config.max_image_px)
        self.strategy_seconds = metrics.histogram(
            "dial_acquisition_strategy_seconds", "time to compute one strategy's map over one image", ["strategy"])
        self.patches_ranked = metrics.counter("dial_acquisition_patches_ranked", "patches returned", ["strategy"])

    def _session_source(self, request, context) -> tuple[AcquisitionModel, WindowedImage, tuple]:
        """An Adapter session's adapted model, image (with its georeference) and clicks."""
        snapshot = self.sessions.read(caller_identity(context), session_id_of(request.session, "session"))
        record = snapshot.record
        asked = request.model
        if asked.name:
            model_ref_from_proto(asked, "model")
        if asked.name and (asked.name, asked.version or record.model_version) != (record.model_name,
                                                                                  record.model_version):
            raise invalid_argument([("model", f"the session uses model {record.model_name}:{record.model_version}; "
                                              "leave model empty or name that one")])
        model = self.models.get(ModelRef(record.model_name, record.model_version))
        network = adapted_network(model.torch_network(), model.manifest, DiscaSettings.from_dict(record.settings),
                                  snapshot.state)
        return model.with_network(network), WindowedImage.whole(snapshot.image, record.geo), record.clicks

    def _compute(self, strategy_name: str, model: AcquisitionModel, image: np.ndarray, clicks=()):
        strategy = get_strategy(strategy_name)
        started = time.perf_counter()
        result = strategy.compute(model, image, clicks)
        self.strategy_seconds.labels(strategy_name).observe(time.perf_counter() - started)
        return strategy, result

    # -- RPCs --------------------------------------------------------------
    def RankPatches(self, request, context):
        v = Violations()
        check_strategy(v, request.strategy, "strategy")
        check_options(v, "", request.patch_size_px, request.reduction, request.hint_quantile)
        exclude = []
        for i, w in enumerate(request.exclude):
            if v.check(w.height > 0 and w.width > 0, f"exclude[{i}]", "must be a non-empty window"):
                exclude.append(window_from_proto(w))
        of_session = request.WhichOneof("source") == "session"
        v.check(not (of_session and request.clicks), "clicks",
                "must be empty when the source is a session: its own clicks are used")
        v.raise_if_any()
        if of_session:
            model, source, clicks = self._session_source(request, context)
        else:
            model = self.models.get(model_ref(request.model, "model"))
            source = self.sources.read(request, model.manifest)
            clicks = clicks_from_proto(request.clicks, "clicks", source.window.height, source.window.width,
                                       model.manifest, source.geo, self.config.max_clicks)
        strategy, result = self._compute(request.strategy, model, source.image, clicks)
        counter = self.patches_ranked.labels(request.strategy)
        for patch in iter_ranked_patches(
                strategy, result, patch_px=request.patch_size_px or model.manifest.tile_px,
                reduction=REDUCTIONS[request.reduction], exclude=exclude, max_patches=request.max_patches,
                cost_weighting=request.cost_weighting, hint_quantile=request.hint_quantile or DEFAULT_HINT_QUANTILE):
            counter.inc()
            yield patch_to_proto(patch, source.geo)

    def GetUncertaintyMap(self, request, context) -> acquisition_pb2.UncertaintyMap:
        v = Violations()
        check_strategy(v, request.strategy, "strategy")
        v.raise_if_any()
        output = self.policy.writable(request.output_uri, "output_uri", inputs=[
            request.raster.uri, request.raster_window.raster.uri], overwrite=request.overwrite
        ) if request.output_uri else None
        if request.WhichOneof("source") == "session":
            model, source, clicks = self._session_source(request, context)
        else:
            model = self.models.get(model_ref(request.model, "model"))
            source = self.sources.read(request, model.manifest)
            clicks = ()
        _, result = self._compute(request.strategy, model, source.image, clicks)
        quantised, low, high = quantise_scores(result.scores)
        height, width = quantised.shape
        # The map covers the source's window, in the source's pixels, and is georeferenced as that window.
        reply = acquisition_pb2.UncertaintyMap(
            window=window_to_proto(Window(source.window.row_off, source.window.col_off, height, width)),
            value_min=low, value_max=high)
        if source.geo is not None:
            reply.geo.CopyFrom(geo_to_proto(source.geo))
        if output is None:
            if quantised.nbytes > self.config.max_message_bytes - 4096:
                raise invalid_argument([("output_uri", f"a {height} × {width} (height × width) map does not fit in "
                                                       "one message; set output_uri")])
            reply.data = quantised.tobytes()
        else:
            # The file says how its bytes decode, so a GIS shows the uncertainty itself, not 0..255.
            try:
                with CogWriter(output, height=height, width=width, geo=source.geo, resampling="average",
                               scale_offset=((high - low) / 255.0, low), overwrite=request.overwrite) as writer:
                    writer.write(quantised, 0, 0)
            except FileExistsError:
                raise AlreadyExists(f"output_uri {request.output_uri} appeared while the map was computed; set "
                                    "overwrite to replace it, or choose another name") from None
            reply.output_uri = request.output_uri
        return reply

    def CreateQueueJob(self, request, context) -> acquisition_pb2.QueueJob:
        spec = request.spec
        v = Violations()
        v.check(0 < len(spec.rasters) <= self.config.max_rasters_per_job, "spec.rasters",
                f"between 1 and {self.config.max_rasters_per_job} rasters per job; split larger sets into jobs")
        check_request_id(v, request.request_id)
        check_strategy(v, spec.strategy, "spec.strategy")
        check_options(v, "spec.", spec.patch_size_px, spec.reduction, spec.hint_quantile)
        v.raise_if_any()
        model = self.models.get(model_ref(spec.model, "spec.model"))
        for i, raster in enumerate(spec.rasters):
            self.policy.readable(raster.uri, f"spec.rasters[{i}].uri")
        stored = acquisition_pb2.QueueJobSpec()
        stored.CopyFrom(spec)
        # Pinned, so a replica that takes the job over ranks with the model it was submitted for.
        stored.model.version = model.manifest.version
        caller = caller_identity(context)
        # The spec as sent identifies a retried request (the stored one has the version resolved, which a
        # new model version would change between tries).
        digest = hashlib.sha256(spec.SerializeToString(deterministic=True)).hexdigest() if request.request_id else ""
        with job_store_writes("no job was created"):
            job = self.jobs.create(caller, stored.SerializeToString(), [r.uri for r in spec.rasters],
                                   spec.max_patches, request_id=request.request_id, request_digest=digest)
        return job_to_proto(job)

    def ListQueueJobs(self, request, context) -> acquisition_pb2.ListQueueJobsResponse:
        if request.page_size < 0:
            raise invalid_argument([("page_size", "must be >= 0")])
        after = None
        if request.page_token:
            created, _, job_id = request.page_token.partition("/")
            try:
                after = (float(created), job_id)
            except ValueError:
                raise page_token_error() from None
            if not is_job_id(job_id) or not math.isfinite(after[0]):
                raise page_token_error()
        size = min(request.page_size or self.config.default_page_size, self.config.max_page_size)
        jobs, next_after = self.jobs.list_jobs(caller_identity(context), size, after)
        return acquisition_pb2.ListQueueJobsResponse(
            jobs=[job_to_proto(job) for job in jobs],
            next_page_token="" if next_after is None else f"{next_after[0]!r}/{next_after[1]}")

    def _plan_queue_job(self, stored: bytes):
        """How to rank a stored job's rasters, on whichever replica runs it."""
        spec = acquisition_pb2.QueueJobSpec.FromString(stored)
        model = self.models.get(ModelRef(spec.model.name, spec.model.version or None))
        options = dict(patch_px=spec.patch_size_px or model.manifest.tile_px, reduction=REDUCTIONS[spec.reduction],
                       max_patches=spec.max_patches, cost_weighting=spec.cost_weighting,
                       hint_quantile=spec.hint_quantile or DEFAULT_HINT_QUANTILE)

        def rank(uri: str, should_stop: Callable[[], None]):
            # The field as CreateQueueJob names it, so a failed job says which of its rasters is at fault.
            field = f"spec.rasters[{[r.uri for r in spec.rasters].index(uri)}]"
            source = self.sources.read_raster(uri, field, model.manifest)
            should_stop()
            strategy, result = self._compute(spec.strategy, model, source.image)
            should_stop()
            return list(iter_ranked_patches(strategy, result, **options)), source.geo

        return rank

    def _job(self, name: str, field: str, context) -> JobRecord:
        prefix = "queueJobs/"
        if not name.startswith(prefix) or not is_job_id(name[len(prefix):]):
            raise invalid_argument([(field, f"must be a job name 'queueJobs/{{id}}', got {quoted(name)}")])
        # Another caller's job is reported as missing, so job names reveal nothing.
        try:
            job = self.jobs.get(name[len(prefix):], caller_identity(context))
        except DamagedRecord:
            raise damaged_job(name) from None
        if job is None:
            raise NotFound(f"no queue job {name}")
        return job

    def GetQueueJob(self, request, context) -> acquisition_pb2.QueueJob:
        return job_to_proto(self._job(request.name, "name", context))

    def CancelQueueJob(self, request, context) -> acquisition_pb2.QueueJob:
        name = request.name
        if is_job_id(name.removeprefix("queueJobs/")) and name.startswith("queueJobs/"):
            # There is no DeleteQueueJob: cancelling is how an owner clears a job whose record is damaged.
            with job_store_writes("the damaged job is still there"):
                if self.jobs.remove_damaged(name.removeprefix("queueJobs/"), caller_identity(context)):
                    return acquisition_pb2.QueueJob(
                        name=name, state=acquisition_pb2.QueueJob.State.CANCELLED,
                        error_message="its record was damaged in the job store and has been removed")
        job = self._job(name, "name", context)
        with job_store_writes("the job is unchanged"):
            return job_to_proto(self.jobs.cancel(job))

    def ListQueuePatches(self, request, context) -> acquisition_pb2.ListQueuePatchesResponse:
        if request.page_size < 0:
            raise invalid_argument([("page_size", "must be >= 0")])
        job = self._job(request.parent, "parent", context)
        token = request.page_token
        finished_order = token.startswith(FINISHED_ORDER) or (not token and job.state != "SUCCEEDED")
        if finished_order:
            after_finished = finished_order_token(token) if token else (-1, 0)
        else:
            try:
                after = int(token or 0)
            except ValueError:
                raise page_token_error() from None
            if after < 0:
                raise page_token_error()
        if job.state in ("FAILED", "CANCELLED"):
            raise Unusable(f"queueJobs/{job.id} is {job.state}; it has no queue")
        if not finished_order and job.state != "SUCCEEDED":
            raise Unusable(f"queueJobs/{job.id} is {job.state}; this page token is of its final "
                           "ranking, listed once it has SUCCEEDED")
        size = min(request.page_size or self.config.default_page_size, self.config.max_page_size)
        try:
            if finished_order:
                page, geos, position = self.jobs.page_finished(job, size, after_finished)
                # A job still running has more to come, so its pages always say where to pick up.
                ended = job.state == "SUCCEEDED" and len(page) < size
                next_token = "" if ended else f"{FINISHED_ORDER}{position[0]}.{position[1]}"
            else:
                page, geos, next_after = self.jobs.page(job, size, after)
                next_token = "" if next_after is None else str(next_after)
        except DamagedRecord:
            raise damaged_job(request.parent) from None
        return acquisition_pb2.ListQueuePatchesResponse(
            patches=[acquisition_pb2.QueuedPatch(id=q.id, raster_uri=q.raster_uri,
                                                 patch=patch_to_proto(q.patch, geos.get(q.raster_uri)))
                     for q in page],
            next_page_token=next_token)

    def MarkPatchesDone(self, request, context) -> acquisition_pb2.MarkPatchesDoneResponse:
        job = self._job(request.name, "name", context)
        if job.state != "SUCCEEDED":
            raise Unusable(f"queueJobs/{job.id} is {job.state}; only a SUCCEEDED job has patches to mark")
        try:
            with job_store_writes("nothing was marked"):
                marked, unknown = self.jobs.mark_done(job, list(request.patch_ids))
        except DamagedRecord:
            raise damaged_job(request.name) from None
        if unknown:
            raise invalid_argument([("patch_ids", f"unknown patch ids {unknown[:5]}; nothing was marked")])
        return acquisition_pb2.MarkPatchesDoneResponse(marked_count=marked)
