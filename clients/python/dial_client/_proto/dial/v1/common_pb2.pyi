from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_TYPE_UNSPECIFIED: _ClassVar[DataType]
    DATA_TYPE_UINT8: _ClassVar[DataType]
    DATA_TYPE_UINT16: _ClassVar[DataType]
DATA_TYPE_UNSPECIFIED: DataType
DATA_TYPE_UINT8: DataType
DATA_TYPE_UINT16: DataType

class GeoReference(_message.Message):
    __slots__ = ("crs", "transform")
    CRS_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    crs: str
    transform: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, crs: _Optional[str] = ..., transform: _Optional[_Iterable[float]] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("data", "dtype", "height", "width", "bands", "geo")
    DATA_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    BANDS_FIELD_NUMBER: _ClassVar[int]
    GEO_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    dtype: DataType
    height: int
    width: int
    bands: int
    geo: GeoReference
    def __init__(self, data: _Optional[bytes] = ..., dtype: _Optional[_Union[DataType, str]] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., bands: _Optional[int] = ..., geo: _Optional[_Union[GeoReference, _Mapping]] = ...) -> None: ...

class RasterReference(_message.Message):
    __slots__ = ("uri",)
    URI_FIELD_NUMBER: _ClassVar[int]
    uri: str
    def __init__(self, uri: _Optional[str] = ...) -> None: ...

class Window(_message.Message):
    __slots__ = ("row_off", "col_off", "height", "width")
    ROW_OFF_FIELD_NUMBER: _ClassVar[int]
    COL_OFF_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    row_off: int
    col_off: int
    height: int
    width: int
    def __init__(self, row_off: _Optional[int] = ..., col_off: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ...) -> None: ...

class RasterWindow(_message.Message):
    __slots__ = ("raster", "window")
    RASTER_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    raster: RasterReference
    window: Window
    def __init__(self, raster: _Optional[_Union[RasterReference, _Mapping]] = ..., window: _Optional[_Union[Window, _Mapping]] = ...) -> None: ...

class MapBounds(_message.Message):
    __slots__ = ("min_x", "min_y", "max_x", "max_y", "crs")
    MIN_X_FIELD_NUMBER: _ClassVar[int]
    MIN_Y_FIELD_NUMBER: _ClassVar[int]
    MAX_X_FIELD_NUMBER: _ClassVar[int]
    MAX_Y_FIELD_NUMBER: _ClassVar[int]
    CRS_FIELD_NUMBER: _ClassVar[int]
    min_x: float
    min_y: float
    max_x: float
    max_y: float
    crs: str
    def __init__(self, min_x: _Optional[float] = ..., min_y: _Optional[float] = ..., max_x: _Optional[float] = ..., max_y: _Optional[float] = ..., crs: _Optional[str] = ...) -> None: ...

class PixelPoint(_message.Message):
    __slots__ = ("row", "col")
    ROW_FIELD_NUMBER: _ClassVar[int]
    COL_FIELD_NUMBER: _ClassVar[int]
    row: int
    col: int
    def __init__(self, row: _Optional[int] = ..., col: _Optional[int] = ...) -> None: ...

class MapPoint(_message.Message):
    __slots__ = ("x", "y", "crs")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    CRS_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    crs: str
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., crs: _Optional[str] = ...) -> None: ...

class Click(_message.Message):
    __slots__ = ("pixel", "map", "class_id")
    PIXEL_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    pixel: PixelPoint
    map: MapPoint
    class_id: int
    def __init__(self, pixel: _Optional[_Union[PixelPoint, _Mapping]] = ..., map: _Optional[_Union[MapPoint, _Mapping]] = ..., class_id: _Optional[int] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ClassMap(_message.Message):
    __slots__ = ("data", "height", "width")
    DATA_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    height: int
    width: int
    def __init__(self, data: _Optional[bytes] = ..., height: _Optional[int] = ..., width: _Optional[int] = ...) -> None: ...

class Probabilities(_message.Message):
    __slots__ = ("data", "classes", "height", "width")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    classes: int
    height: int
    width: int
    def __init__(self, data: _Optional[bytes] = ..., classes: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ...) -> None: ...

class ClassInfo(_message.Message):
    __slots__ = ("id", "name", "colour")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLOUR_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    colour: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., colour: _Optional[str] = ...) -> None: ...

class BandInfo(_message.Message):
    __slots__ = ("name", "mean", "std")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    name: str
    mean: float
    std: float
    def __init__(self, name: _Optional[str] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ...) -> None: ...

class ClickEncoding(_message.Message):
    __slots__ = ("kind", "radius_px")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RADIUS_PX_FIELD_NUMBER: _ClassVar[int]
    kind: str
    radius_px: float
    def __init__(self, kind: _Optional[str] = ..., radius_px: _Optional[float] = ...) -> None: ...

class TrainingSummary(_message.Message):
    __slots__ = ("command", "data", "validation_metrics")
    class ValidationMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_METRICS_FIELD_NUMBER: _ClassVar[int]
    command: str
    data: str
    validation_metrics: _containers.ScalarMap[str, float]
    def __init__(self, command: _Optional[str] = ..., data: _Optional[str] = ..., validation_metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "version", "architecture", "encoder", "classes", "bands", "input_dtype", "click_encoding", "tile_px", "overlap_px", "execution_provider", "ready", "training")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    BANDS_FIELD_NUMBER: _ClassVar[int]
    INPUT_DTYPE_FIELD_NUMBER: _ClassVar[int]
    CLICK_ENCODING_FIELD_NUMBER: _ClassVar[int]
    TILE_PX_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_PX_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    architecture: str
    encoder: str
    classes: _containers.RepeatedCompositeFieldContainer[ClassInfo]
    bands: _containers.RepeatedCompositeFieldContainer[BandInfo]
    input_dtype: DataType
    click_encoding: ClickEncoding
    tile_px: int
    overlap_px: int
    execution_provider: str
    ready: bool
    training: TrainingSummary
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., architecture: _Optional[str] = ..., encoder: _Optional[str] = ..., classes: _Optional[_Iterable[_Union[ClassInfo, _Mapping]]] = ..., bands: _Optional[_Iterable[_Union[BandInfo, _Mapping]]] = ..., input_dtype: _Optional[_Union[DataType, str]] = ..., click_encoding: _Optional[_Union[ClickEncoding, _Mapping]] = ..., tile_px: _Optional[int] = ..., overlap_px: _Optional[int] = ..., execution_provider: _Optional[str] = ..., ready: _Optional[bool] = ..., training: _Optional[_Union[TrainingSummary, _Mapping]] = ...) -> None: ...
