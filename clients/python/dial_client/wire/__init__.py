"""The dial.v1 wire format, in one public place.

The generated protobuf and gRPC modules are re-exported here, so that the
client, the services, the tests and the QGIS plugin all name the API the
same way (``from dial_client.wire import segmenter_pb2``) and nobody reaches
into the generated package, whose layout is ``protos/generate.py``'s business.
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

__all__ = [
    "acquisition_pb2",
    "acquisition_pb2_grpc",
    "adapter_pb2",
    "adapter_pb2_grpc",
    "common_pb2",
    "common_pb2_grpc",
    "segmenter_pb2",
    "segmenter_pb2_grpc",
]
