"""Model metadata as typed values: what ``list_models``, ``get_model`` and ``Session.export`` return.

Callers read plain Python (``model.classes[0].colour``, ``model.input_dtype ==
"uint16"``) instead of protobuf messages, whose enums and defaults are the
wire's business.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from .wire import DTYPE_NAMES, common_pb2


class ClassInfo(NamedTuple):
    """One class a model predicts. A tuple, so ``for class_id, name, colour in model.classes`` works."""

    id: int
    name: str
    colour: str  # "#rrggbb"


@dataclass(frozen=True)
class BandInfo:
    """One input band, in the order the image's bands must follow, with the normalisation the server applies."""

    name: str
    mean: float
    std: float


@dataclass(frozen=True)
class ModelInfo:
    """One served model version: everything needed to build a valid request.

    ``input_dtype`` is numpy's name ("uint8", "uint16"; "" when the server left
    it unset). ``provider`` is the ONNX Runtime execution provider in use
    ("CUDAExecutionProvider", "CPUExecutionProvider", ...), "" while the model
    is not loaded; ``ready`` says whether it can serve requests now.
    """

    name: str
    version: str
    architecture: str
    encoder: str
    classes: tuple[ClassInfo, ...]
    bands: tuple[BandInfo, ...]
    input_dtype: str
    tile_px: int
    overlap_px: int
    click_encoding: str
    click_radius_px: float
    provider: str
    ready: bool
    training_command: str = ""
    training_data: str = ""
    validation_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)

    @classmethod
    def from_proto(cls, model: common_pb2.Model) -> "ModelInfo":
        return cls(
            name=model.name,
            version=model.version,
            architecture=model.architecture,
            encoder=model.encoder,
            classes=tuple(ClassInfo(c.id, c.name, c.colour) for c in model.classes),
            bands=tuple(BandInfo(b.name, b.mean, b.std) for b in model.bands),
            input_dtype=DTYPE_NAMES.get(model.input_dtype, ""),
            tile_px=model.tile_px,
            overlap_px=model.overlap_px,
            click_encoding=model.click_encoding.kind,
            click_radius_px=model.click_encoding.radius_px,
            provider=model.execution_provider,
            ready=model.ready,
            training_command=model.training.command,
            training_data=model.training.data,
            validation_metrics=dict(model.training.validation_metrics),
        )
