from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictRequest(_message.Message):
    __slots__ = ("model", "image", "clicks", "return_probabilities")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    RETURN_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    image: _common_pb2.Image
    clicks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Click]
    return_probabilities: bool
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., clicks: _Optional[_Iterable[_Union[_common_pb2.Click, _Mapping]]] = ..., return_probabilities: _Optional[bool] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("class_map", "probabilities", "model", "execution_provider")
    CLASS_MAP_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    class_map: _common_pb2.ClassMap
    probabilities: _common_pb2.Probabilities
    model: _common_pb2.ModelRef
    execution_provider: str
    def __init__(self, class_map: _Optional[_Union[_common_pb2.ClassMap, _Mapping]] = ..., probabilities: _Optional[_Union[_common_pb2.Probabilities, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., execution_provider: _Optional[str] = ...) -> None: ...

class TiledRasterHeader(_message.Message):
    __slots__ = ("height", "width", "bands", "dtype", "geo", "nodata")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    BANDS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    GEO_FIELD_NUMBER: _ClassVar[int]
    NODATA_FIELD_NUMBER: _ClassVar[int]
    height: int
    width: int
    bands: int
    dtype: _common_pb2.DataType
    geo: _common_pb2.GeoReference
    nodata: float
    def __init__(self, height: _Optional[int] = ..., width: _Optional[int] = ..., bands: _Optional[int] = ..., dtype: _Optional[_Union[_common_pb2.DataType, str]] = ..., geo: _Optional[_Union[_common_pb2.GeoReference, _Mapping]] = ..., nodata: _Optional[float] = ...) -> None: ...

class PredictRasterHeader(_message.Message):
    __slots__ = ("model", "clicks", "raster", "tiles", "output_uri", "stream_tiles", "window", "aoi", "source_bands", "source_range", "vector_uri", "overwrite", "confidence_uri")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    RASTER_FIELD_NUMBER: _ClassVar[int]
    TILES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    STREAM_TILES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    AOI_FIELD_NUMBER: _ClassVar[int]
    SOURCE_BANDS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_RANGE_FIELD_NUMBER: _ClassVar[int]
    VECTOR_URI_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_URI_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    clicks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Click]
    raster: _common_pb2.RasterReference
    tiles: TiledRasterHeader
    output_uri: str
    stream_tiles: bool
    window: _common_pb2.Window
    aoi: _common_pb2.MapBounds
    source_bands: _containers.RepeatedScalarFieldContainer[int]
    source_range: ValueRange
    vector_uri: str
    overwrite: bool
    confidence_uri: str
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., clicks: _Optional[_Iterable[_Union[_common_pb2.Click, _Mapping]]] = ..., raster: _Optional[_Union[_common_pb2.RasterReference, _Mapping]] = ..., tiles: _Optional[_Union[TiledRasterHeader, _Mapping]] = ..., output_uri: _Optional[str] = ..., stream_tiles: _Optional[bool] = ..., window: _Optional[_Union[_common_pb2.Window, _Mapping]] = ..., aoi: _Optional[_Union[_common_pb2.MapBounds, _Mapping]] = ..., source_bands: _Optional[_Iterable[int]] = ..., source_range: _Optional[_Union[ValueRange, _Mapping]] = ..., vector_uri: _Optional[str] = ..., overwrite: _Optional[bool] = ..., confidence_uri: _Optional[str] = ...) -> None: ...

class ValueRange(_message.Message):
    __slots__ = ("min", "max")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    min: float
    max: float
    def __init__(self, min: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class ImageTile(_message.Message):
    __slots__ = ("window", "image")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    window: _common_pb2.Window
    image: _common_pb2.Image
    def __init__(self, window: _Optional[_Union[_common_pb2.Window, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ...) -> None: ...

class PredictRasterRequest(_message.Message):
    __slots__ = ("header", "tile")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TILE_FIELD_NUMBER: _ClassVar[int]
    header: PredictRasterHeader
    tile: ImageTile
    def __init__(self, header: _Optional[_Union[PredictRasterHeader, _Mapping]] = ..., tile: _Optional[_Union[ImageTile, _Mapping]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("tiles_done", "tiles_total", "tiles_skipped")
    TILES_DONE_FIELD_NUMBER: _ClassVar[int]
    TILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TILES_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    tiles_done: int
    tiles_total: int
    tiles_skipped: int
    def __init__(self, tiles_done: _Optional[int] = ..., tiles_total: _Optional[int] = ..., tiles_skipped: _Optional[int] = ...) -> None: ...

class ClassMapTile(_message.Message):
    __slots__ = ("window", "class_map")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    CLASS_MAP_FIELD_NUMBER: _ClassVar[int]
    window: _common_pb2.Window
    class_map: _common_pb2.ClassMap
    def __init__(self, window: _Optional[_Union[_common_pb2.Window, _Mapping]] = ..., class_map: _Optional[_Union[_common_pb2.ClassMap, _Mapping]] = ...) -> None: ...

class RasterResult(_message.Message):
    __slots__ = ("output_uri", "geo", "height", "width", "window", "vector_uri", "vector_features", "tiles_skipped", "nodata_class", "confidence_uri")
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    GEO_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    VECTOR_URI_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FEATURES_FIELD_NUMBER: _ClassVar[int]
    TILES_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    NODATA_CLASS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_URI_FIELD_NUMBER: _ClassVar[int]
    output_uri: str
    geo: _common_pb2.GeoReference
    height: int
    width: int
    window: _common_pb2.Window
    vector_uri: str
    vector_features: int
    tiles_skipped: int
    nodata_class: int
    confidence_uri: str
    def __init__(self, output_uri: _Optional[str] = ..., geo: _Optional[_Union[_common_pb2.GeoReference, _Mapping]] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., window: _Optional[_Union[_common_pb2.Window, _Mapping]] = ..., vector_uri: _Optional[str] = ..., vector_features: _Optional[int] = ..., tiles_skipped: _Optional[int] = ..., nodata_class: _Optional[int] = ..., confidence_uri: _Optional[str] = ...) -> None: ...

class PredictRasterResponse(_message.Message):
    __slots__ = ("progress", "class_map_tile", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CLASS_MAP_TILE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    class_map_tile: ClassMapTile
    result: RasterResult
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., class_map_tile: _Optional[_Union[ClassMapTile, _Mapping]] = ..., result: _Optional[_Union[RasterResult, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_common_pb2.Model]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[_common_pb2.Model, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...
