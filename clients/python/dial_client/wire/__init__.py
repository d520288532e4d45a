"""The dial.v1 wire format, in one public place: the generated modules and the array codecs.

The client, the services, the tests and the QGIS plugin all import the API
from here (``from dial_client.wire import segmenter_pb2, image_from_proto``),
so both ends of a call encode and decode with the same functions and the
same dtype tables. The generated modules are written by ``protos/generate.py``
into the private ``dial_client._proto`` package, whose layout is that
script's business; nothing outside ``dial_client`` imports it.
"""
from .._proto.dial.v1 import (
    acquisition_pb2,
    acquisition_pb2_grpc,
    adapter_pb2,
    adapter_pb2_grpc,
    common_pb2,
    common_pb2_grpc,
    segmenter_pb2,
    segmenter_pb2_grpc,
)
from .arrays import (
    DATA_TYPES,
    DTYPE_NAMES,
    DTYPES,
    WireError,
    class_map_from_proto,
    class_map_to_proto,
    data_type_of,
    image_from_proto,
    image_to_proto,
    probabilities_from_proto,
    probabilities_to_proto,
    quantise_probabilities,
    quantise_scores,
    uncertainty_from_proto,
    wire_dtype,
)

__all__ = [
    "acquisition_pb2",
    "acquisition_pb2_grpc",
    "adapter_pb2",
    "adapter_pb2_grpc",
    "common_pb2",
    "common_pb2_grpc",
    "segmenter_pb2",
    "segmenter_pb2_grpc",
    "DATA_TYPES",
    "DTYPE_NAMES",
    "DTYPES",
    "WireError",
    "class_map_from_proto",
    "class_map_to_proto",
    "data_type_of",
    "image_from_proto",
    "image_to_proto",
    "probabilities_from_proto",
    "probabilities_to_proto",
    "quantise_probabilities",
    "quantise_scores",
    "uncertainty_from_proto",
    "wire_dtype",
]
