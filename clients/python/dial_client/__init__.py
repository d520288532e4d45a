"""dial_client: a thin Python client for the DIAL dial.v1 gRPC API.

Depends only on grpcio, protobuf and numpy; never on torch or rasterio. The
wire format itself (the generated modules and the array codecs) is
:mod:`dial_client.wire`.
"""
from ._version import __version__
from . import aio
from .acquisition import AcquisitionClient, Patch, QueueJob, QueuedPatch, RasterFailure, UncertaintyMap
from .clicks import Click, MapClick, click_from_proto
from .errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    DialError,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    error_from_rpc,
)
from .geo import GeoReference
from .models import BandInfo, ClassInfo, ModelInfo
from .segmenter import PredictResult, RasterPrediction, SegmenterClient
from .adapter import AdaptResult, AdapterClient, DiscaConfig, Session, SessionInfo, VectorExport
from .transport import DEFAULT_MAX_MESSAGE_BYTES, RetryPolicy, TlsConfig

__all__ = [
    "__version__",
    "AcquisitionClient",
    "Patch",
    "QueueJob",
    "QueuedPatch",
    "RasterFailure",
    "UncertaintyMap",
    "ModelInfo",
    "ClassInfo",
    "BandInfo",
    "aio",
    "SegmenterClient",
    "AdapterClient",
    "Session",
    "SessionInfo",
    "VectorExport",
    "AdaptResult",
    "DiscaConfig",
    "PredictResult",
    "RasterPrediction",
    "Click",
    "MapClick",
    "GeoReference",
    "RetryPolicy",
    "TlsConfig",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DialError",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "Unauthenticated",
    "ResourceExhausted",
    "FailedPrecondition",
    "Unavailable",
    "DeadlineExceeded",
    "Cancelled",
    "Unimplemented",
    "Internal",
    "error_from_rpc",
    "click_from_proto",
]
