"""numpy arrays <-> the protobuf Image, ClassMap and Probabilities messages.

Images travel as their native uint8/uint16 bytes, little-endian and
band-interleaved-by-pixel, never as floats: that keeps a 512 x 512 x 9 tile
at 2.4 MB (uint8) instead of 9.4 MB of float32.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ._proto.dial.v1 import common_pb2
from .geo import GeoReference

_WIRE_DTYPES = {
    common_pb2.DATA_TYPE_UINT8: np.dtype("u1"),
    common_pb2.DATA_TYPE_UINT16: np.dtype("<u2"),
}
_DATA_TYPES = {np.dtype(np.uint8): common_pb2.DATA_TYPE_UINT8, np.dtype(np.uint16): common_pb2.DATA_TYPE_UINT16}


def data_type_of(dtype: np.dtype) -> int:
    """The DataType enum value of a numpy dtype; TypeError for anything but uint8/uint16."""
    native = np.dtype(dtype).newbyteorder("=")
    if native not in _DATA_TYPES:
        raise TypeError(
            f"images must be uint8 or uint16 in their native range, got {np.dtype(dtype)}; "
            "the server normalises bands itself"
        )
    return _DATA_TYPES[native]


def image_to_proto(image: np.ndarray, geo: Optional[GeoReference] = None) -> common_pb2.Image:
    """An ``(H, W, B)`` or ``(H, W)`` uint8/uint16 array as an Image message."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if array.ndim != 3:
        raise ValueError(f"images must be (H, W) or (H, W, B) arrays, got shape {array.shape}")
    data_type = data_type_of(array.dtype)
    wire = np.ascontiguousarray(array, dtype=_WIRE_DTYPES[data_type])
    height, width, bands = wire.shape
    message = common_pb2.Image(data=wire.tobytes(), dtype=data_type, height=height, width=width, bands=bands)
    if geo is not None:
        message.geo.CopyFrom(geo.to_proto())
    return message


def image_from_proto(image: common_pb2.Image) -> np.ndarray:
    """An Image message as a writable ``(H, W, B)`` array in native byte order."""
    if image.dtype not in _WIRE_DTYPES:
        raise ValueError(f"image dtype {common_pb2.DataType.Name(image.dtype)} is not uint8 or uint16")
    wire = _WIRE_DTYPES[image.dtype]
    array = _from_bytes(image.data, wire, (image.height, image.width, image.bands), "image")
    return array.astype(wire.newbyteorder("="))


def class_map_to_proto(labels: np.ndarray) -> common_pb2.ClassMap:
    """An ``(H, W)`` array of class ids below 256 as a ClassMap message."""
    array = np.asarray(labels)
    if array.ndim != 2:
        raise ValueError(f"class maps must be (H, W) arrays, got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError("class ids must lie in 0..255 to fit a uint8 class map")
    height, width = array.shape
    data = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    return common_pb2.ClassMap(data=data, height=height, width=width)


def class_map_from_proto(class_map: common_pb2.ClassMap) -> np.ndarray:
    """A ClassMap message as a writable ``(H, W)`` uint8 array."""
    shape = (class_map.height, class_map.width)
    return _from_bytes(class_map.data, np.dtype(np.uint8), shape, "class map").copy()


def probabilities_to_proto(probabilities: np.ndarray) -> common_pb2.Probabilities:
    """A ``(K, H, W)`` float array of probabilities, quantised to round(p * 255)."""
    array = np.asarray(probabilities, dtype=np.float32)
    if array.ndim != 3:
        raise ValueError(f"probabilities must be (K, H, W) arrays, got shape {array.shape}")
    classes, height, width = array.shape
    quantised = np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    return common_pb2.Probabilities(
        data=np.ascontiguousarray(quantised).tobytes(), classes=classes, height=height, width=width
    )


def probabilities_from_proto(probabilities: common_pb2.Probabilities) -> np.ndarray:
    """A Probabilities message as a ``(K, H, W)`` float32 array in [0, 1], within 1/510."""
    shape = (probabilities.classes, probabilities.height, probabilities.width)
    quantised = _from_bytes(probabilities.data, np.dtype(np.uint8), shape, "probabilities")
    return quantised.astype(np.float32) / np.float32(255.0)


def _from_bytes(data: bytes, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.ndarray:
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{what} holds {len(data)} bytes, but shape {shape} of {dtype} needs {expected}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)
