"""How one DISCA adaptation runs: its settings and their defaults, without torch.

The command line builds its parser from these (choices, defaults in the
help), so ``dial --help`` need not import the adapter (dial.adaptation.disca).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dial.model.manifest import Manifest

VARIANTS = ("full", "fast")
# Adam, tuned per variant with the INRIA buildings model on three Dubai
# scenes (tile 2) held apart from those it is evaluated on, 10 clicks.
# fast (buildings:1): Building IoU 12.0 -> 11.7 (lr 1e-4), -> 20.0 (1e-3),
# -> 16.1 (1e-2). full (buildings:2): 10.8 -> 14.2 (3e-4), -> 7.0 (1e-3):
# updating the encoder too, full drifts away from p0 at the fast rate.
DEFAULT_LEARNING_RATES = {"full": 3e-4, "fast": 1e-3}
# lambda of the L1 recall term. A model's manifest may set its own
# ("adaptation"): buildings:2 uses 0.3 under domain shift, where 1.0 pulls
# the map back towards p0 so hard that ten clicks teach little; landcover:2
# keeps 1.0, the value its learning rate was tuned with.
DEFAULT_RECALL_WEIGHT = 1.0


def default_learning_rate(variant: str) -> float:
    return DEFAULT_LEARNING_RATES.get(variant, DEFAULT_LEARNING_RATES["fast"])


@dataclass(frozen=True)
class DiscaSettings:
    """How one adaptation runs; every field has the meaning of its proto twin."""

    variant: str = "full"
    steps: int = 10
    # None: the model's tuned value (its manifest's "adaptation"), else
    # DEFAULT_LEARNING_RATES[variant] / DEFAULT_RECALL_WEIGHT; see for_model.
    learning_rate: float | None = None
    recall_weight: float | None = None
    annotation_dropout: float = 1.0
    target_radius_px: int = 3
    crop_px: int = 256
    max_crops: int = 4
    seed: int = 0

    def for_model(self, manifest: Manifest) -> "DiscaSettings":
        """These settings with every unset field filled in: the model's tuned defaults, then DIAL's."""
        tuned = manifest.adaptation
        lr = self.learning_rate
        if lr is None:
            lr = tuned.get("learning_rate", {}).get(self.variant, default_learning_rate(self.variant))
        recall = self.recall_weight
        if recall is None:
            recall = tuned.get("recall_weight", DEFAULT_RECALL_WEIGHT)
        return replace(self, learning_rate=float(lr), recall_weight=float(recall))

    def validate(self) -> "DiscaSettings":
        # The crop rule is the tiling's, whose module imports torch: only when settings are checked.
        from dial.inference.tiling import STRIDE_MULTIPLE

        problems = []
        if self.variant not in VARIANTS:
            problems.append(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.steps < 1:
            problems.append(f"steps must be >= 1, got {self.steps}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.recall_weight is not None and not self.recall_weight >= 0:
            problems.append(f"recall_weight must be >= 0, got {self.recall_weight}")
        if not 0 <= self.annotation_dropout <= 1:
            problems.append(f"annotation_dropout must be in [0, 1], got {self.annotation_dropout}")
        if self.variant == "fast" and self.annotation_dropout != 1:
            problems.append("the fast variant caches click-free encoder features, so annotation_dropout must be 1")
        if self.target_radius_px < 0:
            problems.append(f"target_radius_px must be >= 0, got {self.target_radius_px}")
        if self.crop_px < STRIDE_MULTIPLE or self.crop_px % STRIDE_MULTIPLE:
            problems.append(f"crop_px must be a positive multiple of {STRIDE_MULTIPLE}, got {self.crop_px}")
        if self.max_crops < 1:
            problems.append(f"max_crops must be >= 1, got {self.max_crops}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DiscaSettings":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known).validate()
