import datetime

from . import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Reduction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REDUCTION_UNSPECIFIED: _ClassVar[Reduction]
    REDUCTION_MEAN: _ClassVar[Reduction]
    REDUCTION_SUM: _ClassVar[Reduction]
REDUCTION_UNSPECIFIED: Reduction
REDUCTION_MEAN: Reduction
REDUCTION_SUM: Reduction

class RankPatchesRequest(_message.Message):
    __slots__ = ("image", "raster", "session", "model", "strategy", "patch_size_px", "reduction", "cost_weighting", "max_patches", "exclude", "hint_quantile", "clicks")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    RASTER_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    PATCH_SIZE_PX_FIELD_NUMBER: _ClassVar[int]
    REDUCTION_FIELD_NUMBER: _ClassVar[int]
    COST_WEIGHTING_FIELD_NUMBER: _ClassVar[int]
    MAX_PATCHES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FIELD_NUMBER: _ClassVar[int]
    HINT_QUANTILE_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    raster: _common_pb2.RasterReference
    session: str
    model: _common_pb2.ModelRef
    strategy: str
    patch_size_px: int
    reduction: Reduction
    cost_weighting: bool
    max_patches: int
    exclude: _containers.RepeatedCompositeFieldContainer[_common_pb2.Window]
    hint_quantile: float
    clicks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Click]
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., raster: _Optional[_Union[_common_pb2.RasterReference, _Mapping]] = ..., session: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., strategy: _Optional[str] = ..., patch_size_px: _Optional[int] = ..., reduction: _Optional[_Union[Reduction, str]] = ..., cost_weighting: _Optional[bool] = ..., max_patches: _Optional[int] = ..., exclude: _Optional[_Iterable[_Union[_common_pb2.Window, _Mapping]]] = ..., hint_quantile: _Optional[float] = ..., clicks: _Optional[_Iterable[_Union[_common_pb2.Click, _Mapping]]] = ...) -> None: ...

class RankedPatch(_message.Message):
    __slots__ = ("rank", "score", "window", "bounds", "estimated_click_cost", "hints")
    RANK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_CLICK_COST_FIELD_NUMBER: _ClassVar[int]
    HINTS_FIELD_NUMBER: _ClassVar[int]
    rank: int
    score: float
    window: _common_pb2.Window
    bounds: _common_pb2.MapBounds
    estimated_click_cost: float
    hints: _containers.RepeatedCompositeFieldContainer[_common_pb2.PixelPoint]
    def __init__(self, rank: _Optional[int] = ..., score: _Optional[float] = ..., window: _Optional[_Union[_common_pb2.Window, _Mapping]] = ..., bounds: _Optional[_Union[_common_pb2.MapBounds, _Mapping]] = ..., estimated_click_cost: _Optional[float] = ..., hints: _Optional[_Iterable[_Union[_common_pb2.PixelPoint, _Mapping]]] = ...) -> None: ...

class GetUncertaintyMapRequest(_message.Message):
    __slots__ = ("image", "raster", "raster_window", "session", "model", "strategy", "output_uri", "overwrite")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    RASTER_FIELD_NUMBER: _ClassVar[int]
    RASTER_WINDOW_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    raster: _common_pb2.RasterReference
    raster_window: _common_pb2.RasterWindow
    session: str
    model: _common_pb2.ModelRef
    strategy: str
    output_uri: str
    overwrite: bool
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., raster: _Optional[_Union[_common_pb2.RasterReference, _Mapping]] = ..., raster_window: _Optional[_Union[_common_pb2.RasterWindow, _Mapping]] = ..., session: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., strategy: _Optional[str] = ..., output_uri: _Optional[str] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class UncertaintyMap(_message.Message):
    __slots__ = ("window", "data", "value_min", "value_max", "output_uri", "geo")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    VALUE_MIN_FIELD_NUMBER: _ClassVar[int]
    VALUE_MAX_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    GEO_FIELD_NUMBER: _ClassVar[int]
    window: _common_pb2.Window
    data: bytes
    value_min: float
    value_max: float
    output_uri: str
    geo: _common_pb2.GeoReference
    def __init__(self, window: _Optional[_Union[_common_pb2.Window, _Mapping]] = ..., data: _Optional[bytes] = ..., value_min: _Optional[float] = ..., value_max: _Optional[float] = ..., output_uri: _Optional[str] = ..., geo: _Optional[_Union[_common_pb2.GeoReference, _Mapping]] = ...) -> None: ...

class QueueJobSpec(_message.Message):
    __slots__ = ("rasters", "model", "strategy", "max_patches", "patch_size_px", "reduction", "cost_weighting", "hint_quantile")
    RASTERS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    MAX_PATCHES_FIELD_NUMBER: _ClassVar[int]
    PATCH_SIZE_PX_FIELD_NUMBER: _ClassVar[int]
    REDUCTION_FIELD_NUMBER: _ClassVar[int]
    COST_WEIGHTING_FIELD_NUMBER: _ClassVar[int]
    HINT_QUANTILE_FIELD_NUMBER: _ClassVar[int]
    rasters: _containers.RepeatedCompositeFieldContainer[_common_pb2.RasterReference]
    model: _common_pb2.ModelRef
    strategy: str
    max_patches: int
    patch_size_px: int
    reduction: Reduction
    cost_weighting: bool
    hint_quantile: float
    def __init__(self, rasters: _Optional[_Iterable[_Union[_common_pb2.RasterReference, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., strategy: _Optional[str] = ..., max_patches: _Optional[int] = ..., patch_size_px: _Optional[int] = ..., reduction: _Optional[_Union[Reduction, str]] = ..., cost_weighting: _Optional[bool] = ..., hint_quantile: _Optional[float] = ...) -> None: ...

class QueueJobProgress(_message.Message):
    __slots__ = ("rasters_done", "rasters_total", "rasters_failed")
    RASTERS_DONE_FIELD_NUMBER: _ClassVar[int]
    RASTERS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RASTERS_FAILED_FIELD_NUMBER: _ClassVar[int]
    rasters_done: int
    rasters_total: int
    rasters_failed: int
    def __init__(self, rasters_done: _Optional[int] = ..., rasters_total: _Optional[int] = ..., rasters_failed: _Optional[int] = ...) -> None: ...

class RasterFailure(_message.Message):
    __slots__ = ("uri", "reason")
    URI_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    uri: str
    reason: str
    def __init__(self, uri: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class QueueJob(_message.Message):
    __slots__ = ("name", "spec", "state", "progress", "error_message", "create_time", "update_time", "failures", "request_id")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[QueueJob.State]
        PENDING: _ClassVar[QueueJob.State]
        RUNNING: _ClassVar[QueueJob.State]
        SUCCEEDED: _ClassVar[QueueJob.State]
        FAILED: _ClassVar[QueueJob.State]
        CANCELLED: _ClassVar[QueueJob.State]
        CANCELLING: _ClassVar[QueueJob.State]
    STATE_UNSPECIFIED: QueueJob.State
    PENDING: QueueJob.State
    RUNNING: QueueJob.State
    SUCCEEDED: QueueJob.State
    FAILED: QueueJob.State
    CANCELLED: QueueJob.State
    CANCELLING: QueueJob.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: QueueJobSpec
    state: QueueJob.State
    progress: QueueJobProgress
    error_message: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    failures: _containers.RepeatedCompositeFieldContainer[RasterFailure]
    request_id: str
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[QueueJobSpec, _Mapping]] = ..., state: _Optional[_Union[QueueJob.State, str]] = ..., progress: _Optional[_Union[QueueJobProgress, _Mapping]] = ..., error_message: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failures: _Optional[_Iterable[_Union[RasterFailure, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateQueueJobRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: QueueJobSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[QueueJobSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListQueueJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListQueueJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[QueueJob]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[QueueJob, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetQueueJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CancelQueueJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class QueuedPatch(_message.Message):
    __slots__ = ("id", "raster_uri", "patch")
    ID_FIELD_NUMBER: _ClassVar[int]
    RASTER_URI_FIELD_NUMBER: _ClassVar[int]
    PATCH_FIELD_NUMBER: _ClassVar[int]
    id: str
    raster_uri: str
    patch: RankedPatch
    def __init__(self, id: _Optional[str] = ..., raster_uri: _Optional[str] = ..., patch: _Optional[_Union[RankedPatch, _Mapping]] = ...) -> None: ...

class ListQueuePatchesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListQueuePatchesResponse(_message.Message):
    __slots__ = ("patches", "next_page_token")
    PATCHES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    patches: _containers.RepeatedCompositeFieldContainer[QueuedPatch]
    next_page_token: str
    def __init__(self, patches: _Optional[_Iterable[_Union[QueuedPatch, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class MarkPatchesDoneRequest(_message.Message):
    __slots__ = ("name", "patch_ids")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATCH_IDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    patch_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., patch_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class MarkPatchesDoneResponse(_message.Message):
    __slots__ = ("marked_count",)
    MARKED_COUNT_FIELD_NUMBER: _ClassVar[int]
    marked_count: int
    def __init__(self, marked_count: _Optional[int] = ...) -> None: ...
