"""``dial.v1.Adapter``: protobuf in, DISCA sessions, protobuf out."""
from __future__ import annotations

import hashlib
import math
import os
import time

from google.protobuf import empty_pb2, timestamp_pb2

from dial.adaptation.disca import DiscaSettings
from dial.clicks import Click
from dial.errors import AlreadyExists, StoreReadOnly, Unusable, refusal_kind
from dial.imagery.vector import FORMATS as VECTOR_FORMATS, VectorError, vectorize
from dial.inference.classwise import class_argmax
from dial.model.manifest import Manifest
from dial.model.repository import ModelRepository
from dial_client.wire import (
    adapter_pb2, adapter_pb2_grpc, class_map_to_proto, common_pb2, probabilities_to_proto, segmenter_pb2,
)
from dial_services.adapter.config import MAX_LEARNING_RATE, MAX_RECALL_WEIGHT, MAX_STEPS_PER_CALL, AdapterConfig
from dial_services.adapter.sessions import LiveSession, SessionManager
from dial_services.common.auth import caller_identity
from dial_services.common.config import named
from dial_services.common.convert import geo_to_proto, model_to_proto
from dial_services.common.errors import Violations, invalid_argument
from dial_services.common.metrics import ServiceMetrics
from dial_services.common.session_record import session_id_of
from dial_services.common.sources import Sources
from dial_services.common.uri_policy import UriPolicy
from dial_services.common.validation import check_request_id, clicks_from_proto, model_ref_from_proto, page_bounds

# What ExportSessionVectors writes, as PredictRaster's vector_uri: GDAL picks the driver from the suffix.
VECTOR_SUFFIXES = tuple(VECTOR_FORMATS)
SERVICE_NAME = adapter_pb2.DESCRIPTOR.services_by_name["Adapter"].full_name
VARIANT_NAMES = {adapter_pb2.ADAPTATION_VARIANT_FULL: "full", adapter_pb2.ADAPTATION_VARIANT_FAST: "fast"}
VARIANT_PROTOS = {name: value for value, name in VARIANT_NAMES.items()}


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def session_to_proto(live: LiveSession) -> adapter_pb2.Session:
    record = live.record
    s = DiscaSettings.from_dict(record.settings)
    proto = adapter_pb2.Session(
        name=f"sessions/{record.id}",
        model=common_pb2.ModelRef(name=record.model_name, version=record.model_version),
        image_height=record.height,
        image_width=record.width,
        clicks=[common_pb2.Click(pixel=common_pb2.PixelPoint(row=c.row, col=c.col), class_id=c.class_id)
                for c in record.clicks],
        adaptation_count=record.adaptation_count,
        create_time=_timestamp(record.create_time),
        update_time=_timestamp(record.update_time),
        config=adapter_pb2.DiscaConfig(variant=VARIANT_PROTOS[s.variant], steps=s.steps,
                                       learning_rate=s.learning_rate, recall_weight=s.recall_weight,
                                       annotation_dropout=s.annotation_dropout),
        request_id=record.extra.get("request_id", ""),
    )
    if record.geo is not None:
        proto.geo.CopyFrom(geo_to_proto(record.geo))
    return proto


class AdapterServicer(adapter_pb2_grpc.AdapterServicer):
    def __init__(self, config: AdapterConfig, sessions: SessionManager, metrics: ServiceMetrics):
        self.config = config
        self.sessions = sessions
        # Exports go to a repository of their own when the served one is read-only (a shared volume the
        # release process writes); they are served once an operator copies them over.
        self.exports = ModelRepository(config.export_repo) if config.export_repo else sessions.repo
        self.sources = Sources(UriPolicy.of(config), config.max_image_px)
        self.adaptation_seconds = metrics.histogram("dial_adaptation_duration_seconds",
                                                    "wall-clock time of one Adapt call", ["variant"])
        metrics.gauge("dial_adapter_sessions_quarantined",
                      "sessions moved aside because their files cannot be read; their owners get DATA_LOSS"
                      ).set_function(sessions.store.quarantined_count)

    def _served(self, name: str, version: str) -> bool:
        """Whether the model repository (not the export repository) has ``name:version``."""
        # A folder, usable or not: copying the export over it would fail (versions are immutable).
        return (self.sessions.repo.root / name / version).exists()

    # -- requests -> core --------------------------------------------------
    def _settings(self, proto: adapter_pb2.DiscaConfig, v: Violations) -> DiscaSettings | None:
        c = self.config
        variant = VARIANT_NAMES.get(proto.variant, c.adaptation_variant)
        if proto.variant and proto.variant not in VARIANT_NAMES:
            v.add("config.variant", f"unknown variant {proto.variant}")
        steps = proto.steps if proto.HasField("steps") else c.adaptation_steps
        # None leaves the choice to the model's tuned defaults, then DIAL's (DiscaSettings.for_model).
        lr = proto.learning_rate if proto.HasField("learning_rate") else c.learning_rate
        recall = proto.recall_weight if proto.HasField("recall_weight") else c.recall_weight
        dropout = proto.annotation_dropout if proto.HasField("annotation_dropout") else 1.0
        v.check(1 <= steps <= MAX_STEPS_PER_CALL, "config.steps", f"must be in 1..{MAX_STEPS_PER_CALL}")
        v.check(lr is None or (math.isfinite(lr) and 0 < lr <= MAX_LEARNING_RATE), "config.learning_rate",
                f"must be a number in (0, {MAX_LEARNING_RATE:g}]")
        v.check(recall is None or (math.isfinite(recall) and 0 <= recall <= MAX_RECALL_WEIGHT),
                "config.recall_weight", f"must be a number in [0, {MAX_RECALL_WEIGHT:g}]")
        ok = v.check(0 <= dropout <= 1, "config.annotation_dropout", "must be in [0, 1]")
        if ok and variant == "fast":
            v.check(dropout == 1, "config.annotation_dropout",
                    "the fast variant trains on click-free encoder features, so it must be 1")
        if v.items:
            return None
        return DiscaSettings(variant=variant, steps=steps, learning_rate=lr, recall_weight=recall,
                             annotation_dropout=dropout, crop_px=c.crop_px, max_crops=c.max_crops).validate()

    def _live_clicks(self, request_clicks, field: str, live: LiveSession) -> list[Click]:
        record = live.record
        v = Violations()
        room = self.config.max_clicks - len(record.clicks)
        clicks = clicks_from_proto(request_clicks, field, record.height, record.width, live.adapter.manifest,
                                   record.geo, max(room, 0), v)
        if room < len(request_clicks):
            v.add(field, f"a session holds at most {self.config.max_clicks} clicks")
        v.check(len(request_clicks) > 0, field, "at least one click is required")
        v.raise_if_any()
        return clicks

    # -- RPCs --------------------------------------------------------------
    def CreateSession(self, request, context) -> adapter_pb2.Session:
        caller = caller_identity(context)
        v = Violations()
        ref = model_ref_from_proto(request.model, "model", v)
        settings = self._settings(request.config, v)
        check_request_id(v, request.request_id)
        v.raise_if_any()
        digest = ""
        if request.request_id:
            # The request as sent identifies a retry (the model's version as the caller named it, so a
            # new latest version between tries does not make a retry look like another request).
            unkeyed = adapter_pb2.CreateSessionRequest()
            unkeyed.CopyFrom(request)
            unkeyed.ClearField("request_id")
            digest = hashlib.sha256(unkeyed.SerializeToString(deterministic=True)).hexdigest()
            # A retry is answered before its image is read again.
            earlier = self.sessions.created_for(caller, request.request_id, digest)
            if earlier is not None:
                return session_to_proto(LiveSession(earlier, adapter=None))
        _, manifest = self.sessions.base_model(ref.name, ref.version)
        # A window's session lives in the window's pixels: its (0, 0) is the window's top-left.
        source = self.sources.read(request, manifest)
        live = self.sessions.create(caller, (manifest.name, manifest.version), source.image, settings, source.geo,
                                    request_id=request.request_id, request_digest=digest)
        return session_to_proto(live)

    def GetSession(self, request, context) -> adapter_pb2.Session:
        with self.sessions.session(caller_identity(context), session_id_of(request.name)) as live:
            return session_to_proto(live)

    def ListSessions(self, request, context) -> adapter_pb2.ListSessionsResponse:
        if request.page_size < 0:
            raise invalid_argument([("page_size", "must be >= 0")])
        records = sorted(self.sessions.owned(caller_identity(context)), key=lambda r: (-r.create_time, r.id))
        start, stop = page_bounds(request.page_size, request.page_token, len(records))
        sessions = []
        for record in records[start:stop]:
            sessions.append(session_to_proto(LiveSession(record, adapter=None)))
        return adapter_pb2.ListSessionsResponse(sessions=sessions,
                                                next_page_token=str(stop) if stop < len(records) else "")

    def DeleteSession(self, request, context) -> empty_pb2.Empty:
        self.sessions.delete(caller_identity(context), session_id_of(request.name))
        return empty_pb2.Empty()

    def AddClicks(self, request, context) -> adapter_pb2.Session:
        with self.sessions.session(caller_identity(context), session_id_of(request.name)) as live:
            clicks = self._live_clicks(request.clicks, "clicks", live)
            record = live.record
            self.sessions.commit(live, record.changed(time.time(), clicks=record.clicks + tuple(clicks)))
            return session_to_proto(live)

    def UndoClick(self, request, context) -> adapter_pb2.Session:
        with self.sessions.session(caller_identity(context), session_id_of(request.name)) as live:
            record = live.record
            if not record.clicks:
                raise Unusable(f"{request.name} has no click to undo")
            self.sessions.commit(live, record.changed(time.time(), clicks=record.clicks[:-1]))
            return session_to_proto(live)

    def Adapt(self, request, context) -> adapter_pb2.AdaptResponse:
        steps = None
        if request.HasField("steps"):
            if not 1 <= request.steps <= MAX_STEPS_PER_CALL:
                raise invalid_argument([("steps", f"must be in 1..{MAX_STEPS_PER_CALL}")])
            steps = request.steps
        with self.sessions.session(caller_identity(context), session_id_of(request.name)) as live:
            if not live.record.clicks:
                raise Unusable(f"{request.name} has no clicks to adapt on; add clicks first")
            adapter = live.adapter
            before = adapter.state_dict()
            started = time.perf_counter()
            adapter.adapt(live.record.clicks, steps=steps)
            seconds = time.perf_counter() - started
            record = live.record
            try:
                self.sessions.commit(live, record.changed(time.time(), adaptation_count=record.adaptation_count + 1),
                                     state=adapter.state_dict())
            except BaseException:
                adapter.load_state_dict(before)
                raise
            self.adaptation_seconds.labels(adapter.settings.variant).observe(seconds)
            return adapter_pb2.AdaptResponse(session=session_to_proto(live), adaptation_seconds=seconds)

    def PredictSession(self, request, context) -> segmenter_pb2.PredictResponse:
        with self.sessions.session(caller_identity(context), session_id_of(request.name)) as live:
            probs = live.adapter.predict_probabilities(live.record.clicks)
            record = live.record
            response = segmenter_pb2.PredictResponse(
                class_map=class_map_to_proto(class_argmax(probs)),
                model=common_pb2.ModelRef(name=record.model_name, version=record.model_version),
                execution_provider=live.adapter.predictor().provider,
            )
            if request.return_probabilities:
                response.probabilities.CopyFrom(probabilities_to_proto(probs))
            return response

    def ExportSessionModel(self, request, context) -> common_pb2.Model:
        caller = caller_identity(context)
        model_ref_from_proto(request.model, "model", version_required=True)
        with self.sessions.session(caller, session_id_of(request.name)) as live:
            record = live.record
            base = live.adapter.manifest
            training = dict(base.training or {})
            training["adapted_from"] = {
                "session": f"sessions/{record.id}",
                "base_model": f"{record.model_name}:{record.model_version}",
                "clicks": len(record.clicks),
                "adaptation_count": record.adaptation_count,
                "settings": record.settings,
            }
            manifest = Manifest.from_dict({**base.to_dict(), "name": request.model.name,
                                           "version": request.model.version, "weights_sha256": "",
                                           "training": training})
            if self.exports is not self.sessions.repo and self._served(request.model.name, request.model.version):
                raise AlreadyExists(f"model {request.model.name}:{request.model.version} already exists; versions "
                                    "are immutable")
            try:
                # Marked as an export: pinned requests reach it, but "latest" of this name
                # stays the operator's choice (see ModelRepository.promote).
                saved = self.exports.save(live.adapter.model, manifest, exported_by={
                    "caller": caller, "session": f"sessions/{record.id}"})
            except OSError as error:
                kind = refusal_kind(error)
                if kind is None:
                    raise
                if kind is StoreReadOnly:
                    # Not UNAVAILABLE: a read-only repository stays so, and a client would retry in vain.
                    raise Unusable("this server's model repository is read-only, so it cannot take exports; "
                                   f"its operator can give it a writable one with {named('export_repo')} "
                                   "(see 'Exported models' in deploy/OPERATIONS.md)") from None
                # strerror, not str(error): the latter names the server's path.
                raise kind("the model repository cannot take the export: " + os.strerror(error.errno)) from None
            return model_to_proto(saved, "", ready=False)

    def ExportSessionVectors(self, request, context) -> adapter_pb2.ExportSessionVectorsResponse:
        session_id = session_id_of(request.name)
        v = Violations()
        v.check(math.isfinite(request.simplify) and request.simplify >= 0, "simplify",
                "must be a distance in map units >= 0")
        v.raise_if_any()
        output = self.sources.policy.writable(request.output_uri, "output_uri", suffixes=VECTOR_SUFFIXES,
                                              kind="GeoPackage or GeoJSON files")
        with self.sessions.session(caller_identity(context), session_id) as live:
            if output.exists() and not request.overwrite:
                raise AlreadyExists("output_uri: a file is already there; set overwrite to replace it, or "
                                    "choose another name")
            record = live.record
            class_map = class_argmax(live.adapter.predict_probabilities(record.clicks))
            try:
                count = vectorize(class_map, record.geo, output, live.adapter.manifest.class_names,
                                  simplify=request.simplify)
            except VectorError as error:
                raise invalid_argument([("output_uri", str(error))]) from None
            except OSError as error:
                kind = refusal_kind(error)
                if kind is None:
                    raise
                raise kind("the output folder cannot take the polygons: " + os.strerror(error.errno)) from None
            return adapter_pb2.ExportSessionVectorsResponse(output_uri=request.output_uri, feature_count=count,
                                                            adaptation_count=record.adaptation_count)
