"""AdapterClient: DISCA adaptation sessions on the Adapter service.

A :class:`Session` is a handle on a server-side resource: every method is
one call, and the server checkpoints each change before it answers, so a
session survives a server restart. Calls that change a session (clicks,
undo, adapt) are never retried, so a retry cannot add a click twice; a
create is, as it carries a request id the server recognises on a retry.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Optional, Union

import numpy as np

from .clicks import AnyClick, Click
from .geo import GeoReference
from .models import ModelInfo
from .segmenter import PredictResult
from .transport import DEFAULT_MAX_MESSAGE_BYTES, RetryPolicy, ServiceClient, TlsConfig
from .wire import adapter_pb2, adapter_pb2_grpc, common_pb2, image_to_proto

VARIANTS = {"full": adapter_pb2.ADAPTATION_VARIANT_FULL, "fast": adapter_pb2.ADAPTATION_VARIANT_FAST}
_VARIANT_NAMES = {v: k for k, v in VARIANTS.items()}


@dataclass(frozen=True)
class DiscaConfig:
    """The adaptation settings a session uses."""

    variant: str
    steps: int
    learning_rate: float
    recall_weight: float
    annotation_dropout: float


@dataclass(frozen=True)
class SessionInfo:
    """A snapshot of a session: its model, image size, clicks (oldest first) and adaptation count."""

    name: str
    model: str
    version: str
    image_height: int
    image_width: int
    clicks: tuple[Click, ...]
    adaptation_count: int
    create_time: datetime
    update_time: datetime
    config: DiscaConfig
    geo: Optional[GeoReference]
    request_id: str = ""

    @property
    def session_id(self) -> str:
        return self.name.split("/", 1)[1]

    @classmethod
    def from_proto(cls, proto: adapter_pb2.Session) -> "SessionInfo":
        c = proto.config
        return cls(
            name=proto.name,
            model=proto.model.name,
            version=proto.model.version,
            image_height=proto.image_height,
            image_width=proto.image_width,
            clicks=tuple(Click(k.pixel.row, k.pixel.col, k.class_id) for k in proto.clicks),
            adaptation_count=proto.adaptation_count,
            create_time=proto.create_time.ToDatetime(tzinfo=timezone.utc),
            update_time=proto.update_time.ToDatetime(tzinfo=timezone.utc),
            config=DiscaConfig(_VARIANT_NAMES.get(c.variant, "unspecified"), c.steps, c.learning_rate,
                               c.recall_weight, c.annotation_dropout),
            geo=GeoReference.from_proto(proto.geo),
            request_id=proto.request_id,
        )


@dataclass(frozen=True)
class AdaptResult:
    """The session after an Adapt call, and how long the adaptation took on the server."""

    session: SessionInfo
    adaptation_seconds: float

    @classmethod
    def from_proto(cls, proto: adapter_pb2.AdaptResponse) -> "AdaptResult":
        return cls(SessionInfo.from_proto(proto.session), proto.adaptation_seconds)


@dataclass(frozen=True)
class VectorExport:
    """What ExportSessionVectors wrote: the file (as named in the request), its polygon count, and the
    session's adaptation count the class map came from."""

    output_uri: str
    feature_count: int
    adaptation_count: int

    @classmethod
    def from_proto(cls, proto: adapter_pb2.ExportSessionVectorsResponse) -> "VectorExport":
        return cls(proto.output_uri, proto.feature_count, proto.adaptation_count)


class SessionHandle:
    """What a session handle of either client holds: its client and the last snapshot the server returned."""

    def __init__(self, client, info: SessionInfo):
        self._client = client
        self.info = info

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def session_id(self) -> str:
        return self.info.session_id


class Session(SessionHandle):
    """One adaptation session; ``info`` is the last snapshot the server returned."""

    _client: "AdapterClient"

    def _keep(self, proto: adapter_pb2.Session) -> SessionInfo:
        self.info = SessionInfo.from_proto(proto)
        return self.info

    def get(self, *, timeout: Optional[float] = None) -> SessionInfo:
        request = adapter_pb2.GetSessionRequest(name=self.name)
        return self._keep(self._client._call("GetSession", request, timeout))

    def add_clicks(self, clicks: Iterable[AnyClick], *, timeout: Optional[float] = None) -> SessionInfo:
        request = add_clicks_request(self.name, clicks)
        return self._keep(self._client._call("AddClicks", request, timeout, idempotent=False))

    def undo(self, *, timeout: Optional[float] = None) -> SessionInfo:
        """Remove the most recent click (adaptation already done from it stays)."""
        request = adapter_pb2.UndoClickRequest(name=self.name)
        return self._keep(self._client._call("UndoClick", request, timeout, idempotent=False))

    def adapt(self, steps: Optional[int] = None, *, timeout: Optional[float] = None) -> AdaptResult:
        result = AdaptResult.from_proto(self._client._call("Adapt", adapt_request(self.name, steps), timeout,
                                                           idempotent=False))
        self.info = result.session
        return result

    def predict(self, *, return_probabilities: bool = False, timeout: Optional[float] = None) -> PredictResult:
        request = adapter_pb2.PredictSessionRequest(name=self.name, return_probabilities=return_probabilities)
        return PredictResult.from_proto(self._client._call("PredictSession", request, timeout))

    def export(self, name: str, version: str = "1", *, timeout: Optional[float] = None) -> ModelInfo:
        """Save the adapted model as ``name:version`` in the server's model repository."""
        request = export_request(self.name, name, version)
        return ModelInfo.from_proto(self._client._call("ExportSessionModel", request, timeout, idempotent=False))

    def export_vectors(self, output_uri: str, *, simplify: float = 0.0, overwrite: bool = False,
                       timeout: Optional[float] = None) -> VectorExport:
        """Have the server write the session's current class map as polygons with class ids and names: a
        ``.gpkg`` (the image's CRS) or ``.geojson`` (WGS 84) under its raster roots."""
        request = export_vectors_request(self.name, output_uri, simplify, overwrite)
        # Not retried: a retry of a write that landed would meet its own file (ALREADY_EXISTS).
        return VectorExport.from_proto(self._client._call("ExportSessionVectors", request, timeout, idempotent=False))

    def delete(self, *, timeout: Optional[float] = None) -> None:
        self._client._call("DeleteSession", adapter_pb2.DeleteSessionRequest(name=self.name), timeout)


class AdapterClient(ServiceClient):
    """A client of the Adapter service; use it as a context manager to close its channel.

    The options mean what they mean for ``SegmenterClient``; ``caller`` names
    the caller, and sessions are visible only to the caller that created them.
    """

    STUB = adapter_pb2_grpc.AdapterStub
    SERVICE = adapter_pb2.DESCRIPTOR.services_by_name["Adapter"].full_name

    def __init__(
        self,
        target: str,
        *,
        timeout: Optional[float] = 120.0,
        retries: Union[int, RetryPolicy] = 3,
        token: Optional[str] = None,
        tls: Optional[TlsConfig] = None,
        caller: Optional[str] = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        wait_for_ready: bool = True,
    ) -> None:
        super().__init__(target, timeout=timeout, retries=retries, token=token, tls=tls, caller=caller,
                         max_message_bytes=max_message_bytes, wait_for_ready=wait_for_ready)

    def create_session(
        self,
        image: Union[np.ndarray, str],
        *,
        model: str,
        version: Optional[str] = None,
        geo: Optional[GeoReference] = None,
        window: Optional[tuple[int, int, int, int]] = None,
        variant: Optional[str] = None,
        steps: Optional[int] = None,
        learning_rate: Optional[float] = None,
        recall_weight: Optional[float] = None,
        annotation_dropout: Optional[float] = None,
        request_id: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Session:
        """Start a session on an (H, W, B) array, or on a GeoTIFF the server reads (a path or URI).

        ``window`` = (row_off, col_off, height, width) takes only that part of
        a GeoTIFF. Unset adaptation settings take the server's defaults.

        The create is idempotent: it carries ``request_id`` (a new UUID when None), which the client's own
        retries send again, so a retried create returns the session the first try made. Pass your own to
        retry across processes; the same id with another request is ``AlreadyExists``.
        """
        request = create_session_request(image, model=model, version=version, geo=geo, window=window,
                                         variant=variant, steps=steps, learning_rate=learning_rate,
                                         recall_weight=recall_weight, annotation_dropout=annotation_dropout,
                                         request_id=request_id)
        return Session(self, SessionInfo.from_proto(self._call("CreateSession", request, timeout)))

    def get_session(self, session: str, *, timeout: Optional[float] = None) -> Session:
        """A handle on an existing session, by id or by name ("sessions/{id}")."""
        proto = self._call("GetSession", adapter_pb2.GetSessionRequest(name=session_name(session)), timeout)
        return Session(self, SessionInfo.from_proto(proto))

    def list_sessions(self, *, page_size: int = 0, timeout: Optional[float] = None) -> list[SessionInfo]:
        """The caller's sessions, newest first, following page tokens to the end."""
        found: list[SessionInfo] = []
        token = ""
        while True:
            response = self._call("ListSessions",
                                  adapter_pb2.ListSessionsRequest(page_size=page_size, page_token=token), timeout)
            found.extend(SessionInfo.from_proto(s) for s in response.sessions)
            token = response.next_page_token
            if not token:
                return found


# The requests both clients send (this one and ``dial_client.aio``'s), built in one place.
def add_clicks_request(name: str, clicks: Iterable[AnyClick]) -> adapter_pb2.AddClicksRequest:
    return adapter_pb2.AddClicksRequest(name=name, clicks=[c.to_proto() for c in clicks])


def adapt_request(name: str, steps: Optional[int]) -> adapter_pb2.AdaptRequest:
    request = adapter_pb2.AdaptRequest(name=name)
    if steps is not None:
        request.steps = steps
    return request


def export_request(name: str, model: str, version: str) -> adapter_pb2.ExportSessionModelRequest:
    return adapter_pb2.ExportSessionModelRequest(name=name, model=common_pb2.ModelRef(name=model, version=str(version)))


def export_vectors_request(name: str, output_uri: str, simplify: float,
                           overwrite: bool) -> adapter_pb2.ExportSessionVectorsRequest:
    return adapter_pb2.ExportSessionVectorsRequest(name=name, output_uri=str(output_uri), simplify=simplify,
                                                   overwrite=overwrite)


def session_name(session: str) -> str:
    """A session's resource name from its id or its name."""
    return session if session.startswith("sessions/") else f"sessions/{session}"


def create_session_request(
    image: Union[np.ndarray, str],
    *,
    model: str,
    version: Optional[str],
    geo: Optional[GeoReference],
    window: Optional[tuple[int, int, int, int]],
    variant: Optional[str],
    steps: Optional[int],
    learning_rate: Optional[float],
    recall_weight: Optional[float],
    annotation_dropout: Optional[float],
    request_id: Optional[str],
) -> adapter_pb2.CreateSessionRequest:
    """The CreateSession request for :meth:`AdapterClient.create_session`'s arguments (the asyncio client's too)."""
    config = adapter_pb2.DiscaConfig()
    if variant is not None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        config.variant = VARIANTS[variant]
    for field, value in (("steps", steps), ("learning_rate", learning_rate), ("recall_weight", recall_weight),
                         ("annotation_dropout", annotation_dropout)):
        if value is not None:
            setattr(config, field, value)
    request = adapter_pb2.CreateSessionRequest(model=common_pb2.ModelRef(name=model, version=version or ""),
                                               config=config)
    if isinstance(image, np.ndarray):
        if window is not None:
            raise ValueError("window applies to a server-side GeoTIFF; slice the array instead")
        request.image.CopyFrom(image_to_proto(image, geo))
    else:
        if geo is not None:
            raise ValueError("geo georeferences array sources; a GeoTIFF carries its own")
        if window is None:
            request.raster.uri = str(image)
        else:
            row_off, col_off, height, width = window
            request.raster_window.raster.uri = str(image)
            request.raster_window.window.CopyFrom(
                common_pb2.Window(row_off=row_off, col_off=col_off, height=height, width=width))
    request.request_id = uuid.uuid4().hex if request_id is None else request_id
    return request
