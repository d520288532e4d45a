"""Core results to protobuf: class maps, probabilities and model metadata."""
from __future__ import annotations

import numpy as np

from dial.model.manifest import Manifest
from dial_client.wire import common_pb2
from dial_services.common.validation import PROTO_DTYPE


def class_map_to_proto(labels: np.ndarray) -> common_pb2.ClassMap:
    return common_pb2.ClassMap(data=np.ascontiguousarray(labels, dtype=np.uint8).tobytes(),
                               height=labels.shape[0], width=labels.shape[1])


def quantise_probabilities(probs: np.ndarray) -> np.ndarray:
    """(K, H, W) in [0, 1] -> uint8 p*255, rounded: 4x smaller than float32."""
    return np.clip(np.rint(probs * 255.0), 0, 255).astype(np.uint8)


def probabilities_to_proto(probs: np.ndarray) -> common_pb2.Probabilities:
    """(K, H, W) probabilities, or their uint8 quantisation (which callers may build block by block)."""
    quantised = probs if probs.dtype == np.uint8 else quantise_probabilities(probs)
    return common_pb2.Probabilities(data=np.ascontiguousarray(quantised).tobytes(), classes=probs.shape[0],
                                    height=probs.shape[1], width=probs.shape[2])


def geo_to_proto(crs: str | None, transform) -> common_pb2.GeoReference:
    return common_pb2.GeoReference(crs=crs or "", transform=list(transform))


def model_to_proto(manifest: Manifest, provider: str = "", ready: bool = False) -> common_pb2.Model:
    training = manifest.training or {}
    validation = training.get("validation", {})
    metrics = {k: float(v) for k, v in validation.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return common_pb2.Model(
        name=manifest.name,
        version=manifest.version,
        architecture=manifest.architecture,
        encoder=manifest.encoder,
        classes=[common_pb2.ClassInfo(id=i, name=c.name, colour=c.colour) for i, c in enumerate(manifest.classes)],
        bands=[common_pb2.BandInfo(name=b.name, mean=b.mean, std=b.std) for b in manifest.bands],
        input_dtype=PROTO_DTYPE[manifest.input_dtype],
        click_encoding=common_pb2.ClickEncoding(kind=manifest.click_encoding.kind,
                                                radius_px=manifest.click_encoding.radius_px),
        tile_px=manifest.tile_px,
        overlap_px=manifest.overlap_px,
        execution_provider=provider,
        ready=ready,
        training=common_pb2.TrainingSummary(command=str(training.get("command", "")),
                                            data=str(training.get("dataset", "")),
                                            validation_metrics=metrics),
    )
