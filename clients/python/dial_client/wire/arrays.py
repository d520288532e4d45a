"""numpy arrays <-> the protobuf Image, ClassMap and Probabilities messages.

Images travel as their native uint8/uint16 bytes, little-endian and
band-interleaved-by-pixel, never as floats: that keeps a 512 x 512 x 9 tile
at 2.4 MB (uint8) instead of 9.4 MB of float32. Class maps are uint8 class
ids; probabilities are quantised to round(p * 255), 4x smaller than float32
and within 1/510 of the value sent. Uncertainty maps, whose range is
anything, are quantised to 255 steps between their minimum and maximum.

Clients and servers encode and decode with these functions alone, so both
ends agree byte for byte; a message that does not decode raises
:class:`WireError`, which names the part of the message at fault.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from .._proto.dial.v1 import acquisition_pb2, common_pb2

if TYPE_CHECKING:
    from ..geo import GeoReference

# DataType -> the numpy dtype of the bytes on the wire, which are little-endian whatever the host.
DTYPES = {common_pb2.DATA_TYPE_UINT8: np.dtype("<u1"), common_pb2.DATA_TYPE_UINT16: np.dtype("<u2")}
# DataType -> numpy's name for it, as model manifests and GeoTIFFs spell it.
DTYPE_NAMES = {data_type: dtype.name for data_type, dtype in DTYPES.items()}
# numpy's name -> DataType.
DATA_TYPES = {name: data_type for data_type, name in DTYPE_NAMES.items()}


class WireError(ValueError):
    """A message that does not decode; ``field`` is the part at fault ("dtype", "data"), relative to the message."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(description)
        self.field = field
        self.description = description


def data_type_of(dtype: np.dtype) -> int:
    """The DataType of a numpy dtype, in either byte order; TypeError for anything but uint8/uint16."""
    name = np.dtype(dtype).name  # the same for both byte orders
    if name not in DATA_TYPES:
        raise TypeError(
            f"images must be uint8 or uint16 in their native range, got {np.dtype(dtype)}; "
            "the server normalises bands itself"
        )
    return DATA_TYPES[name]


def wire_dtype(data_type: int) -> np.dtype:
    """The numpy dtype of an image's bytes for its DataType; WireError("dtype") for an unknown one."""
    dtype = DTYPES.get(data_type)
    if dtype is None:
        raise WireError("dtype", f"unknown dtype {data_type}; use DATA_TYPE_UINT8 or DATA_TYPE_UINT16")
    return dtype


def image_to_proto(image: np.ndarray, geo: Optional["GeoReference"] = None) -> common_pb2.Image:
    """An ``(H, W, B)`` or ``(H, W)`` uint8/uint16 array as an Image message."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if array.ndim != 3:
        raise ValueError(f"images must be (H, W) or (H, W, B) arrays, got shape {array.shape}")
    data_type = data_type_of(array.dtype)
    wire = np.ascontiguousarray(array, dtype=DTYPES[data_type])
    height, width, bands = wire.shape
    message = common_pb2.Image(data=wire.tobytes(), dtype=data_type, height=height, width=width, bands=bands)
    if geo is not None:
        message.geo.CopyFrom(geo.to_proto())
    return message


def image_from_proto(image: common_pb2.Image, *, copy: bool = True) -> np.ndarray:
    """An Image message as an ``(H, W, B)`` array.

    With ``copy`` (the default) the array is writable and in native byte
    order; without, it is a read-only view of the message's bytes, which a
    server reading a large image uses to avoid holding the pixels twice.
    """
    dtype = wire_dtype(image.dtype)
    array = _from_bytes(image.data, dtype, (image.height, image.width, image.bands))
    return array.astype(dtype.newbyteorder("=")) if copy else array


def class_map_to_proto(labels: np.ndarray) -> common_pb2.ClassMap:
    """An ``(H, W)`` array of class ids below 256 as a ClassMap message."""
    array = np.asarray(labels)
    if array.ndim != 2:
        raise ValueError(f"class maps must be (H, W) arrays, got shape {array.shape}")
    # A uint8 map (what servers send) cannot be out of range, and scanning a whole raster's map costs time.
    if array.dtype != np.uint8 and array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError("class ids must lie in 0..255 to fit a uint8 class map")
    height, width = array.shape
    data = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    return common_pb2.ClassMap(data=data, height=height, width=width)


def class_map_from_proto(class_map: common_pb2.ClassMap) -> np.ndarray:
    """A ClassMap message as a writable ``(H, W)`` uint8 array."""
    return _from_bytes(class_map.data, np.dtype(np.uint8), (class_map.height, class_map.width)).copy()


def quantise_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """``(K, H, W)`` probabilities as uint8 round(p * 255), clipped to [0, 255]."""
    return np.clip(np.rint(np.asarray(probabilities) * 255.0), 0, 255).astype(np.uint8)


def probabilities_to_proto(probabilities: np.ndarray) -> common_pb2.Probabilities:
    """``(K, H, W)`` probabilities in [0, 1], or their uint8 quantisation, as a Probabilities message.

    Taking the quantisation lets a server quantise block by block as blocks
    are computed, instead of holding the float probabilities of a whole image.
    """
    array = np.asarray(probabilities)
    if array.ndim != 3:
        raise ValueError(f"probabilities must be (K, H, W) arrays, got shape {array.shape}")
    quantised = array if array.dtype == np.uint8 else quantise_probabilities(array)
    classes, height, width = array.shape
    return common_pb2.Probabilities(
        data=np.ascontiguousarray(quantised).tobytes(), classes=classes, height=height, width=width
    )


def probabilities_from_proto(probabilities: common_pb2.Probabilities) -> np.ndarray:
    """A Probabilities message as a ``(K, H, W)`` float32 array in [0, 1], within 1/510."""
    shape = (probabilities.classes, probabilities.height, probabilities.width)
    quantised = _from_bytes(probabilities.data, np.dtype(np.uint8), shape)
    return quantised.astype(np.float32) / np.float32(255.0)


def quantise_scores(scores: np.ndarray) -> tuple[np.ndarray, float, float]:
    """An ``(H, W)`` score map as (uint8 steps from its minimum to its maximum, minimum, maximum)."""
    low, high = float(scores.min()), float(scores.max())
    quantised = np.rint((scores - low) / ((high - low) or 1.0) * 255.0).astype(np.uint8)
    return quantised, low, high


def uncertainty_from_proto(reply: acquisition_pb2.UncertaintyMap) -> np.ndarray:
    """The ``(H, W)`` float32 values of an UncertaintyMap's bytes: min + byte / 255 * (max - min)."""
    window = reply.window
    raw = _from_bytes(reply.data, np.dtype(np.uint8), (window.height, window.width))
    scale = (reply.value_max - reply.value_min) / 255.0
    return (reply.value_min + raw.astype(np.float32) * scale).astype(np.float32)


def _from_bytes(data: bytes, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        size = "x".join(str(n) for n in shape)
        raise WireError("data", f"expected {expected} bytes for {size} {dtype.name}, got {len(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)
