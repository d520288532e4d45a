import datetime

from . import common_pb2 as _common_pb2
from . import segmenter_pb2 as _segmenter_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AdaptationVariant(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ADAPTATION_VARIANT_UNSPECIFIED: _ClassVar[AdaptationVariant]
    ADAPTATION_VARIANT_FULL: _ClassVar[AdaptationVariant]
    ADAPTATION_VARIANT_FAST: _ClassVar[AdaptationVariant]
ADAPTATION_VARIANT_UNSPECIFIED: AdaptationVariant
ADAPTATION_VARIANT_FULL: AdaptationVariant
ADAPTATION_VARIANT_FAST: AdaptationVariant

class DiscaConfig(_message.Message):
    __slots__ = ("variant", "steps", "learning_rate", "recall_weight", "annotation_dropout")
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    RECALL_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ANNOTATION_DROPOUT_FIELD_NUMBER: _ClassVar[int]
    variant: AdaptationVariant
    steps: int
    learning_rate: float
    recall_weight: float
    annotation_dropout: float
    def __init__(self, variant: _Optional[_Union[AdaptationVariant, str]] = ..., steps: _Optional[int] = ..., learning_rate: _Optional[float] = ..., recall_weight: _Optional[float] = ..., annotation_dropout: _Optional[float] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("name", "model", "image_height", "image_width", "geo", "clicks", "adaptation_count", "create_time", "update_time", "config", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    GEO_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    ADAPTATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: _common_pb2.ModelRef
    image_height: int
    image_width: int
    geo: _common_pb2.GeoReference
    clicks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Click]
    adaptation_count: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    config: DiscaConfig
    request_id: str
    def __init__(self, name: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., image_height: _Optional[int] = ..., image_width: _Optional[int] = ..., geo: _Optional[_Union[_common_pb2.GeoReference, _Mapping]] = ..., clicks: _Optional[_Iterable[_Union[_common_pb2.Click, _Mapping]]] = ..., adaptation_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., config: _Optional[_Union[DiscaConfig, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("model", "image", "raster", "raster_window", "config", "request_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    RASTER_FIELD_NUMBER: _ClassVar[int]
    RASTER_WINDOW_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    image: _common_pb2.Image
    raster: _common_pb2.RasterReference
    raster_window: _common_pb2.RasterWindow
    config: DiscaConfig
    request_id: str
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., raster: _Optional[_Union[_common_pb2.RasterReference, _Mapping]] = ..., raster_window: _Optional[_Union[_common_pb2.RasterWindow, _Mapping]] = ..., config: _Optional[_Union[DiscaConfig, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteSessionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class AddClicksRequest(_message.Message):
    __slots__ = ("name", "clicks")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    name: str
    clicks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Click]
    def __init__(self, name: _Optional[str] = ..., clicks: _Optional[_Iterable[_Union[_common_pb2.Click, _Mapping]]] = ...) -> None: ...

class UndoClickRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class AdaptRequest(_message.Message):
    __slots__ = ("name", "steps")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    steps: int
    def __init__(self, name: _Optional[str] = ..., steps: _Optional[int] = ...) -> None: ...

class AdaptResponse(_message.Message):
    __slots__ = ("session", "adaptation_seconds")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ADAPTATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    session: Session
    adaptation_seconds: float
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ..., adaptation_seconds: _Optional[float] = ...) -> None: ...

class PredictSessionRequest(_message.Message):
    __slots__ = ("name", "return_probabilities")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RETURN_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    return_probabilities: bool
    def __init__(self, name: _Optional[str] = ..., return_probabilities: _Optional[bool] = ...) -> None: ...

class ExportSessionModelRequest(_message.Message):
    __slots__ = ("name", "model")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: _common_pb2.ModelRef
    def __init__(self, name: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class ExportSessionVectorsRequest(_message.Message):
    __slots__ = ("name", "output_uri", "simplify", "overwrite")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    SIMPLIFY_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    name: str
    output_uri: str
    simplify: float
    overwrite: bool
    def __init__(self, name: _Optional[str] = ..., output_uri: _Optional[str] = ..., simplify: _Optional[float] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class ExportSessionVectorsResponse(_message.Message):
    __slots__ = ("output_uri", "feature_count", "adaptation_count")
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    FEATURE_COUNT_FIELD_NUMBER: _ClassVar[int]
    ADAPTATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    output_uri: str
    feature_count: int
    adaptation_count: int
    def __init__(self, output_uri: _Optional[str] = ..., feature_count: _Optional[int] = ..., adaptation_count: _Optional[int] = ...) -> None: ...
