"""The model manifest: everything needed to use a model version correctly.

A manifest travels with the weights in ``models/<name>/<version>/manifest.json``.
It fixes the class list, the input bands and their normalisation, and the
click encoding, so that serving cannot silently differ from training.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dial.clicks import ClickEncoding
from dial.errors import Unusable

FORMAT_VERSION = 1
INPUT_DTYPES = ("uint8", "uint16")


class ManifestError(Unusable, ValueError):
    """A model version is missing, inconsistent, or cannot be used as asked."""


@dataclass(frozen=True)
class BandNorm:
    name: str
    mean: float
    std: float


@dataclass(frozen=True)
class ModelClass:
    name: str
    colour: str  # "#RRGGBB"


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    architecture: str
    encoder: str
    classes: tuple[ModelClass, ...]
    bands: tuple[BandNorm, ...]
    input_dtype: str
    click_encoding: ClickEncoding
    tile_px: int = 512
    overlap_px: int = 128
    weights_file: str = "weights.pt"
    weights_sha256: str = ""
    onnx_file: str = "model.onnx"
    training: dict = field(default_factory=dict)
    # DISCA defaults tuned for this model ("learning_rate": {variant: lr},
    # "recall_weight": lambda); a session or evaluation that sets its own wins.
    adaptation: dict = field(default_factory=dict)
    # Defaults for rasters that are not already in the model's bands and range
    # (dial.imagery.view.BandMapping); a request that sets its own wins.
    # source_bands: 1-based source band per model band, e.g. [1, 1, 1] for a
    # panchromatic source; source_range: the source values spanning the
    # model's dtype range, e.g. [0, 2047] for 11-bit imagery.
    source_bands: tuple[int, ...] = ()
    source_range: tuple[float, float] | None = None
    format_version: int = FORMAT_VERSION

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def in_channels(self) -> int:
        return self.n_bands + self.n_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def normalisation(self) -> tuple[np.ndarray, np.ndarray]:
        mean = np.array([b.mean for b in self.bands], dtype=np.float32)
        std = np.array([b.std for b in self.bands], dtype=np.float32)
        return mean, std

    def to_dict(self) -> dict:
        data = asdict(self)
        data["click_encoding"] = self.click_encoding.to_dict()
        data["in_channels"] = self.in_channels
        return data

    def save(self, directory: Path) -> None:
        (Path(directory) / "manifest.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict, source: str = "manifest") -> "Manifest":
        try:
            manifest = cls(
                name=str(data["name"]),
                version=str(data["version"]),
                architecture=str(data["architecture"]),
                encoder=str(data["encoder"]),
                classes=tuple(ModelClass(str(c["name"]), str(c["colour"])) for c in data["classes"]),
                bands=tuple(BandNorm(str(b["name"]), float(b["mean"]), float(b["std"])) for b in data["bands"]),
                input_dtype=str(data["input_dtype"]),
                click_encoding=ClickEncoding.from_dict(data["click_encoding"]),
                tile_px=int(data.get("tile_px", 512)),
                overlap_px=int(data.get("overlap_px", 128)),
                weights_file=str(data.get("weights_file", "weights.pt")),
                weights_sha256=str(data.get("weights_sha256", "")),
                onnx_file=str(data.get("onnx_file", "model.onnx")),
                training=dict(data.get("training", {})),
                adaptation=dict(data.get("adaptation", {})),
                source_bands=tuple(int(b) for b in data.get("source_bands", ())),
                source_range=_range(data.get("source_range")),
                format_version=int(data.get("format_version", FORMAT_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ManifestError(f"{source}: malformed manifest ({type(error).__name__}: {error})") from None
        manifest.validate(source, declared_in_channels=data.get("in_channels"))
        return manifest

    @classmethod
    def load(cls, directory: Path, source: str | None = None) -> "Manifest":
        """``source`` names the manifest in messages; a server passes the model's name, never its path."""
        path = Path(directory) / "manifest.json"
        source = source or str(path)
        if not path.exists():
            raise ManifestError(f"{source}: no manifest.json")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ManifestError(f"{source}: not valid JSON ({error})") from None
        return cls.from_dict(data, source=source)

    def validate(self, source: str = "manifest", declared_in_channels=None) -> None:
        problems = []
        if self.format_version != FORMAT_VERSION:
            problems.append(f"format_version {self.format_version} (this DIAL reads {FORMAT_VERSION})")
        if self.n_classes < 2:
            problems.append(f"{self.n_classes} classes (need at least 2)")
        if len(set(self.class_names)) != self.n_classes:
            problems.append(f"duplicate class names {list(self.class_names)}")
        if self.n_bands not in (1, 3, 4):
            problems.append(f"{self.n_bands} bands (DIAL models take 1, 3 or 4)")
        if any(not b.std > 0 for b in self.bands):
            problems.append("a band has std <= 0")
        if self.input_dtype not in INPUT_DTYPES:
            problems.append(f"input_dtype {self.input_dtype!r} (must be one of {INPUT_DTYPES})")
        if self.tile_px % 32 or self.tile_px <= 0:
            problems.append(f"tile_px {self.tile_px} must be a positive multiple of 32")
        if not 0 <= self.overlap_px < self.tile_px:
            problems.append(f"overlap_px {self.overlap_px} must be in [0, tile_px)")
        if declared_in_channels is not None and int(declared_in_channels) != self.in_channels:
            problems.append(
                f"in_channels {declared_in_channels} != bands ({self.n_bands}) + classes ({self.n_classes})"
            )
        for c in self.classes:
            if not (len(c.colour) == 7 and c.colour.startswith("#")):
                problems.append(f"class {c.name!r} colour {c.colour!r} is not #RRGGBB")
        for field_name in ("weights_file", "onnx_file"):
            problems.extend(_file_name_problems(field_name, getattr(self, field_name)))
        problems.extend(_adaptation_problems(self.adaptation))
        if self.source_bands and (len(self.source_bands) != self.n_bands or min(self.source_bands) < 1):
            problems.append(f"source_bands {list(self.source_bands)} must name {self.n_bands} source bands, "
                            "each 1 or more")
        if self.source_range is not None and not (math.isfinite(self.source_range[0])
                                                  and math.isfinite(self.source_range[1])
                                                  and self.source_range[0] < self.source_range[1]):
            problems.append(f"source_range {list(self.source_range)} must be [min, max] with min < max")
        if problems:
            raise ManifestError(f"{source}: " + "; ".join(problems))


def _range(value) -> tuple[float, float] | None:
    if value is None:
        return None
    low, high = value  # anything but a pair is a malformed manifest
    return float(low), float(high)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _file_name_problems(field_name: str, value: str) -> list[str]:
    # A manifest names files of its own version folder, never a path: whoever
    # can write a manifest must not steer reads or ONNX writes elsewhere.
    if (not value or value in (".", "..") or "/" in value or "\\" in value or "\0" in value
            or len(value.encode("utf-8", "surrogatepass")) > 200):
        return [f"{field_name} {value[:40]!r} must be a plain file name inside the version folder"]
    return []


def _adaptation_problems(adaptation: dict) -> list[str]:
    problems = []
    rates = adaptation.get("learning_rate", {})
    if not isinstance(rates, dict) or not all(_is_number(v) and v > 0 for v in rates.values()):
        problems.append(f"adaptation.learning_rate must map variants to numbers > 0, got {rates!r}")
    recall = adaptation.get("recall_weight", 0.0)
    if not (_is_number(recall) and recall >= 0):
        problems.append(f"adaptation.recall_weight must be a number >= 0, got {recall!r}")
    return problems
