"""Core results to protobuf: georeferences and model metadata.

Arrays (images, class maps, probabilities) are encoded by the wire format
the client shares, ``dial_client.wire``.
"""
from __future__ import annotations

from dial.imagery.georef import GeoReference
from dial.model.manifest import Manifest
from dial_client.wire import DATA_TYPES, common_pb2


def geo_to_proto(geo: GeoReference | None) -> common_pb2.GeoReference:
    """The message of a core georeference; the empty message (no georeference) for None."""
    if geo is None:
        return common_pb2.GeoReference()
    return common_pb2.GeoReference(crs=geo.crs or "", transform=list(geo.transform))


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
        input_dtype=DATA_TYPES[manifest.input_dtype],
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
