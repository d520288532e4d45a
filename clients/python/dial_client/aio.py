"""The asyncio clients: ``dial_client.aio.SegmenterClient``, ``AdapterClient`` and ``AcquisitionClient`` offer
the blocking clients' surfaces as coroutines.

Built on ``grpc.aio``; requests, replies, errors, metadata, wait-for-ready
and the retry policy are those of the blocking client (the same functions
build and read the messages), only the waiting is ``await``::

    async with dial_client.aio.SegmenterClient("localhost:50051") as client:
        await client.wait_until_ready(60)
        result = await client.predict(image, clicks, model="linknet")
"""
from __future__ import annotations

import asyncio
import random
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Optional, Sequence, TypeVar, Union

import grpc
import grpc.aio
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from . import acquisition as _acquisition
from . import adapter as _adapter
from .adapter import AdaptResult, SessionInfo, VectorExport, add_clicks_request, adapt_request, \
    create_session_request, export_request, export_vectors_request, session_name
from .acquisition import (Patch, QueueJob, QueuedPatch, RankSource, UncertaintyMap, WindowLike, queue_job_request,
                          queued_patches, rank_request, uncertainty_map_request)
from .clicks import AnyClick
from .errors import DeadlineExceeded, DialError, NotFound, error_from_rpc, hint_image_layout
from .geo import GeoReference
from .models import ModelInfo
from .segmenter import PredictResult, SegmenterClient as _BlockingSegmenter, _model_ref, list_models_request, \
    predict_request
from .transport import (
    DEFAULT_MAX_MESSAGE_BYTES,
    READY_CHECK_SECONDS,
    RETRYABLE_CODES,
    RetryPolicy,
    TlsConfig,
    call_metadata,
    channel_options,
)
from .wire import acquisition_pb2, acquisition_pb2_grpc, adapter_pb2, adapter_pb2_grpc, segmenter_pb2, \
    segmenter_pb2_grpc

__all__ = ["AcquisitionClient", "AdapterClient", "SegmenterClient", "Session"]

T = TypeVar("T")


class _Client:
    """The channel, readiness and retried calls every asyncio client shares; subclasses name STUB and
    SERVICE."""

    STUB: Any
    SERVICE: str

    def __init__(
        self,
        target: str,
        *,
        timeout: Optional[float] = 30.0,
        retries: Union[int, RetryPolicy] = 3,
        token: Optional[str] = None,
        tls: Optional[TlsConfig] = None,
        caller: Optional[str] = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        wait_for_ready: bool = True,
    ) -> None:
        options = channel_options(max_message_bytes)
        self._channel = (grpc.aio.insecure_channel(target, options=options) if tls is None
                         else grpc.aio.secure_channel(target, tls.credentials(), options=options))
        self._stub = type(self).STUB(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._timeout = timeout
        self._retry_policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy.with_retries(retries)
        self._metadata = call_metadata(token=token, caller=caller)
        self._wait_for_ready = wait_for_ready

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def is_server_ready(self, *, timeout: Optional[float] = READY_CHECK_SECONDS) -> bool:
        """Whether the service answers and its health is SERVING; False while it cannot be reached."""
        return await self._serving(timeout, wait_for_ready=False)

    async def wait_until_ready(self, timeout: Optional[float] = None, *, poll_seconds: float = 0.2) -> None:
        """Wait until the service is SERVING; DeadlineExceeded after ``timeout`` seconds (None: the
        client's default timeout)."""
        timeout = self._timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED,
                                       f"{self.SERVICE} was not ready within {timeout} s")
            if await self._serving(remaining, wait_for_ready=True):
                return
            await asyncio.sleep(poll_seconds if remaining is None else max(0.0, min(poll_seconds, remaining)))

    async def _serving(self, timeout: Optional[float], *, wait_for_ready: bool) -> bool:
        request = health_pb2.HealthCheckRequest(service=self.SERVICE)
        try:
            reply = await self._health.Check(request, timeout=timeout, metadata=self._metadata,
                                             wait_for_ready=wait_for_ready)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return False
            raise error_from_rpc(error) from error
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any, timeout: Optional[float]) -> T:
        """One unary call with the blocking client's retry policy (callers send only idempotent calls)."""
        return await self._retried(lambda remaining: method(request, timeout=remaining, metadata=self._metadata,
                                                            wait_for_ready=self._wait_for_ready), timeout)

    async def _retried(self, attempt: Callable[[Optional[float]], Awaitable[T]], timeout: Optional[float]) -> T:
        try:
            return await call_with_retry_async(attempt, self._retry_policy,
                                               self._timeout if timeout is None else timeout)
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error) from error


class SegmenterClient(_Client):
    """An asyncio client of the Segmenter service; ``async with`` closes its channel.

    The options mean what they mean for :class:`dial_client.SegmenterClient`.
    """

    STUB = segmenter_pb2_grpc.SegmenterStub
    SERVICE = _BlockingSegmenter.SERVICE

    async def predict(
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
        """Segment an (H, W, B) or (H, W) uint8/uint16 image given the user's clicks."""
        request = predict_request(image, clicks, model=model, version=version,
                                  return_probabilities=return_probabilities, geo=geo)
        try:
            return PredictResult.from_proto(await self._call(self._stub.Predict, request, timeout))
        except DialError as error:
            raise hint_image_layout(error, np.shape(image)) from error.__cause__

    async def list_models(self, *, page_size: int = 0, timeout: Optional[float] = None) -> list[ModelInfo]:
        """Every model version the server offers, following page tokens to the end."""
        models: list[ModelInfo] = []
        page_token = ""
        while True:
            response = await self._call(self._stub.ListModels, list_models_request(page_size, page_token), timeout)
            models.extend(ModelInfo.from_proto(m) for m in response.models)
            page_token = response.next_page_token
            if not page_token:
                return models

    async def get_model(self, name: str, version: Optional[str] = None, *,
                        timeout: Optional[float] = None) -> ModelInfo:
        """One model version's metadata; the latest version when ``version`` is None."""
        request = segmenter_pb2.GetModelRequest(model=_model_ref(name, version))
        return ModelInfo.from_proto(await self._call(self._stub.GetModel, request, timeout))

    async def is_model_ready(self, name: str, version: Optional[str] = None, *,
                             timeout: Optional[float] = None) -> bool:
        """Whether the server has ``name`` (at ``version``, or its latest) loaded and able to serve now."""
        try:
            return (await self.get_model(name, version, timeout=timeout)).ready
        except NotFound:
            return False


async def call_with_retry_async(
    attempt: Callable[[Optional[float]], Awaitable[T]],
    policy: RetryPolicy,
    timeout_seconds: Optional[float],
    *,
    rng: Optional[random.Random] = None,
) -> T:
    """:func:`dial_client.transport.call_with_retry` for coroutines: the same backoff, bounded by the same deadline."""
    rng = rng or random.Random()
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    for retry_index in range(policy.max_attempts):
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            return await attempt(remaining)
        except grpc.aio.AioRpcError as error:
            if retry_index + 1 >= policy.max_attempts or error.code() not in RETRYABLE_CODES:
                raise
            delay = policy.backoff_seconds(retry_index, rng)
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


class AcquisitionClient(_Client):
    """An asyncio client of the Acquisition service; ``async with`` closes its channel.

    The methods, options and errors are those of :class:`dial_client.AcquisitionClient`; ``queue`` and
    ``jobs`` are async iterators::

        async with dial_client.aio.AcquisitionClient("localhost:50053") as client:
            job = await client.submit_queue(rasters, model="linknet", budget=200)
            async for page in client.queue(job):
                ...
    """

    STUB = acquisition_pb2_grpc.AcquisitionStub
    SERVICE = _acquisition.AcquisitionClient.SERVICE

    def __init__(self, target: str, *, timeout: Optional[float] = 300.0, **options: Any) -> None:
        super().__init__(target, timeout=timeout, **options)

    async def rank(self, source: RankSource, *, model: Optional[str] = None, version: Optional[str] = None,
                   strategy: str = "entropy", patch_size: int = 0, reduction: str = "mean",
                   cost_weighting: bool = False, max_patches: int = 0, exclude: Iterable[WindowLike] = (),
                   hint_quantile: float = 0.0, geo: Optional[GeoReference] = None, clicks: Iterable[AnyClick] = (),
                   timeout: Optional[float] = None) -> list[Patch]:
        """Patches of an image, a server-side GeoTIFF or an Adapter session, best first."""
        request = rank_request(source, model=model, version=version, strategy=strategy, patch_size=patch_size,
                               reduction=reduction, cost_weighting=cost_weighting, max_patches=max_patches,
                               exclude=exclude, hint_quantile=hint_quantile, geo=geo, clicks=clicks)

        # Patches are kept per attempt, so a retry after UNAVAILABLE starts the ranking again cleanly.
        async def attempt(remaining: Optional[float]) -> list[Patch]:
            stream = self._stub.RankPatches(request, timeout=remaining, metadata=self._metadata,
                                            wait_for_ready=self._wait_for_ready)
            return [Patch.from_proto(patch) async for patch in stream]

        return await self._retried(attempt, timeout)

    async def uncertainty_map(self, source: RankSource, *, model: Optional[str] = None,
                              version: Optional[str] = None, strategy: str = "entropy",
                              window: Optional[WindowLike] = None, output_uri: str = "",
                              geo: Optional[GeoReference] = None, overwrite: bool = False,
                              timeout: Optional[float] = None) -> UncertaintyMap:
        request = uncertainty_map_request(source, model=model, version=version, strategy=strategy, window=window,
                                          output_uri=output_uri, geo=geo, overwrite=overwrite)
        return UncertaintyMap.from_proto(await self._call(self._stub.GetUncertaintyMap, request, timeout))

    async def submit_queue(self, rasters: Sequence[str], *, model: str, version: Optional[str] = None,
                           strategy: str = "entropy", budget: int = 0, patch_size: int = 0, reduction: str = "mean",
                           cost_weighting: bool = False, hint_quantile: float = 0.0,
                           request_id: Optional[str] = None, timeout: Optional[float] = None) -> QueueJob:
        """Start a queue job; idempotent through ``request_id`` (a new UUID, kept over retries, when None)."""
        request = queue_job_request(rasters, model=model, version=version, strategy=strategy, budget=budget,
                                    patch_size=patch_size, reduction=reduction, cost_weighting=cost_weighting,
                                    hint_quantile=hint_quantile, request_id=request_id)
        return QueueJob.from_proto(await self._call(self._stub.CreateQueueJob, request, timeout))

    create_queue_job = submit_queue

    async def job(self, name: str, *, timeout: Optional[float] = None) -> QueueJob:
        request = acquisition_pb2.GetQueueJobRequest(name=name)
        return QueueJob.from_proto(await self._call(self._stub.GetQueueJob, request, timeout))

    async def jobs(self, *, page_size: int = 0, timeout: Optional[float] = None) -> AsyncIterator[QueueJob]:
        """The caller's queue jobs, newest first."""
        token = ""
        while True:
            request = acquisition_pb2.ListQueueJobsRequest(page_size=page_size, page_token=token)
            reply = await self._call(self._stub.ListQueueJobs, request, timeout)
            for job in reply.jobs:
                yield QueueJob.from_proto(job)
            token = reply.next_page_token
            if not token:
                return

    async def cancel(self, name: str, *, timeout: Optional[float] = None) -> QueueJob:
        request = acquisition_pb2.CancelQueueJobRequest(name=name)
        return QueueJob.from_proto(await self._call(self._stub.CancelQueueJob, request, timeout))

    async def queue_page(self, job: Union[str, QueueJob], page_token: str = "", *, page_size: int = 0,
                         timeout: Optional[float] = None) -> tuple[list[QueuedPatch], str]:
        request = acquisition_pb2.ListQueuePatchesRequest(parent=_acquisition.job_name(job), page_size=page_size,
                                                          page_token=page_token)
        reply = await self._call(self._stub.ListQueuePatches, request, timeout)
        return queued_patches(reply), reply.next_page_token

    async def queue(self, job: Union[str, QueueJob], *, page_size: int = 0,
                    timeout: Optional[float] = None) -> AsyncIterator[list[QueuedPatch]]:
        """The job's queue page by page, as :meth:`dial_client.AcquisitionClient.queue`."""
        token = ""
        while True:
            page, token = await self.queue_page(job, token, page_size=page_size, timeout=timeout)
            if page or not token:
                yield page
            if not token or not page:
                return

    async def mark_done(self, job: Union[str, QueueJob], patch_ids: Iterable[str], *,
                        timeout: Optional[float] = None) -> int:
        request = acquisition_pb2.MarkPatchesDoneRequest(name=_acquisition.job_name(job), patch_ids=list(patch_ids))
        return (await self._call(self._stub.MarkPatchesDone, request, timeout)).marked_count


class Session(_adapter.SessionHandle):
    """One adaptation session of an asyncio :class:`AdapterClient`: the methods of
    :class:`dial_client.Session` as coroutines; ``info`` is the last snapshot the server returned."""

    _client: "AdapterClient"

    async def _keep(self, reply: Awaitable[adapter_pb2.Session]) -> SessionInfo:
        self.info = SessionInfo.from_proto(await reply)
        return self.info

    async def get(self, *, timeout: Optional[float] = None) -> SessionInfo:
        request = adapter_pb2.GetSessionRequest(name=self.name)
        return await self._keep(self._client._call(self._client._stub.GetSession, request, timeout))

    async def add_clicks(self, clicks: Iterable[AnyClick], *, timeout: Optional[float] = None) -> SessionInfo:
        request = add_clicks_request(self.name, clicks)
        return await self._keep(self._client._once(self._client._stub.AddClicks, request, timeout))

    async def undo(self, *, timeout: Optional[float] = None) -> SessionInfo:
        """Remove the most recent click (adaptation already done from it stays)."""
        request = adapter_pb2.UndoClickRequest(name=self.name)
        return await self._keep(self._client._once(self._client._stub.UndoClick, request, timeout))

    async def adapt(self, steps: Optional[int] = None, *, timeout: Optional[float] = None) -> AdaptResult:
        reply = await self._client._once(self._client._stub.Adapt, adapt_request(self.name, steps), timeout)
        result = AdaptResult.from_proto(reply)
        self.info = result.session
        return result

    async def predict(self, *, return_probabilities: bool = False,
                      timeout: Optional[float] = None) -> PredictResult:
        request = adapter_pb2.PredictSessionRequest(name=self.name, return_probabilities=return_probabilities)
        return PredictResult.from_proto(await self._client._call(self._client._stub.PredictSession, request,
                                                                 timeout))

    async def export(self, name: str, version: str = "1", *, timeout: Optional[float] = None) -> ModelInfo:
        """Save the adapted model as ``name:version`` in the server's model repository."""
        reply = await self._client._once(self._client._stub.ExportSessionModel,
                                         export_request(self.name, name, version), timeout)
        return ModelInfo.from_proto(reply)

    async def export_vectors(self, output_uri: str, *, simplify: float = 0.0, overwrite: bool = False,
                             timeout: Optional[float] = None) -> VectorExport:
        """The session's current class map as polygons, written by the server (see
        :meth:`dial_client.Session.export_vectors`)."""
        request = export_vectors_request(self.name, output_uri, simplify, overwrite)
        return VectorExport.from_proto(await self._client._once(self._client._stub.ExportSessionVectors, request,
                                                                timeout))

    async def delete(self, *, timeout: Optional[float] = None) -> None:
        await self._client._call(self._client._stub.DeleteSession, adapter_pb2.DeleteSessionRequest(name=self.name),
                                 timeout)


class AdapterClient(_Client):
    """An asyncio client of the Adapter service; ``async with`` closes its channel.

    The methods, options and errors are those of :class:`dial_client.AdapterClient`, and its sessions'
    of :class:`dial_client.Session`, as coroutines. As there, calls that change a session are never
    retried, and a create is, under its request id::

        async with dial_client.aio.AdapterClient("localhost:50052") as client:
            session = await client.create_session(image, model="linknet")
            await session.add_clicks([Click(10, 20, 1)])
            await session.adapt()
    """

    STUB = adapter_pb2_grpc.AdapterStub
    SERVICE = _adapter.AdapterClient.SERVICE

    def __init__(self, target: str, *, timeout: Optional[float] = 120.0, **options: Any) -> None:
        super().__init__(target, timeout=timeout, **options)

    async def create_session(self, image: Union[np.ndarray, str], *, model: str, version: Optional[str] = None,
                             geo: Optional[GeoReference] = None, window: Optional[tuple[int, int, int, int]] = None,
                             variant: Optional[str] = None, steps: Optional[int] = None,
                             learning_rate: Optional[float] = None, recall_weight: Optional[float] = None,
                             annotation_dropout: Optional[float] = None, request_id: Optional[str] = None,
                             timeout: Optional[float] = None) -> Session:
        """Start a session on an array or a server-side GeoTIFF; idempotent through ``request_id`` (a new
        UUID, kept over retries, when None)."""
        request = create_session_request(image, model=model, version=version, geo=geo, window=window,
                                         variant=variant, steps=steps, learning_rate=learning_rate,
                                         recall_weight=recall_weight, annotation_dropout=annotation_dropout,
                                         request_id=request_id)
        return Session(self, SessionInfo.from_proto(await self._call(self._stub.CreateSession, request, timeout)))

    async def get_session(self, session: str, *, timeout: Optional[float] = None) -> Session:
        """A handle on an existing session, by id or by name ("sessions/{id}")."""
        request = adapter_pb2.GetSessionRequest(name=session_name(session))
        return Session(self, SessionInfo.from_proto(await self._call(self._stub.GetSession, request, timeout)))

    async def list_sessions(self, *, page_size: int = 0, timeout: Optional[float] = None) -> list[SessionInfo]:
        """The caller's sessions, newest first, following page tokens to the end."""
        found: list[SessionInfo] = []
        token = ""
        while True:
            request = adapter_pb2.ListSessionsRequest(page_size=page_size, page_token=token)
            reply = await self._call(self._stub.ListSessions, request, timeout)
            found.extend(SessionInfo.from_proto(s) for s in reply.sessions)
            token = reply.next_page_token
            if not token:
                return found

    async def _once(self, method: Callable[..., Awaitable[T]], request: Any, timeout: Optional[float]) -> T:
        """One unary call, never retried: for calls that change a session, which a retry could apply twice."""
        try:
            return await method(request, timeout=self._timeout if timeout is None else timeout,
                                metadata=self._metadata, wait_for_ready=self._wait_for_ready)
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error) from error
