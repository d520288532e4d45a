"""Acquisition functions: one small class each, registered by name.

As in baal, a strategy only turns (model, image) into a per-pixel priority
map, higher meaning "annotate here first"; turning the map into one score per
patch (mean or sum) is the ranking's job, so a new acquisition function is a
new class plus ``@register``. A strategy may override :meth:`Strategy.patch_scores`
when its patch score is not a reduction of one map (MetaBox multiplies two sums).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np
import torch

from dial.acquisition.confidnet import load_head
from dial.acquisition.cost import click_cost_map
from dial.acquisition.metaseg import load_regressor, quality_map
from dial.acquisition.model import AcquisitionModel
from dial.acquisition.tiled import blend_tiles, logit_maps
from dial.inference.classwise import class_argmax, entropy_from_logits, margin_from_logits
from dial.inference.tiling import predict_probabilities
from dial.model.network import NetworkParts
from dial.clicks import Click
from dial.imagery.georef import Window

REDUCTIONS = ("mean", "sum")

@dataclass
class UncertaintyResult:
    """``scores`` (H, W) float32, higher is more informative; ``labels`` the (H, W) uint8 prediction."""

    scores: np.ndarray
    labels: np.ndarray
    extras: dict = field(default_factory=dict)

def window_sums(values: np.ndarray, windows: Sequence[Window]) -> np.ndarray:
    """Sum of ``values`` over each window (float64)."""
    w = np.asarray(windows, dtype=np.int64).reshape(-1, 4)
    if int((w[:, 2] * w[:, 3]).sum()) <= 2 * values.size:
        # A tiling, or nearly: summing each window reads every pixel about
        # once, 15x faster than building an integral image.
        return np.array([values[r: r + h, c: c + wd].sum(dtype=np.float64) for r, c, h, wd in w], dtype=np.float64)
    integral = np.zeros((values.shape[0] + 1, values.shape[1] + 1), dtype=np.float64)
    np.cumsum(np.cumsum(values, axis=0, dtype=np.float64), axis=1, out=integral[1:, 1:])
    r0, c0, r1, c1 = w[:, 0], w[:, 1], w[:, 0] + w[:, 2], w[:, 1] + w[:, 3]
    return integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]

class Strategy:
    name: ClassVar[str]

    def compute(self, model: AcquisitionModel, image: np.ndarray, clicks: Sequence[Click] = ()) -> UncertaintyResult:
        raise NotImplementedError

    def patch_scores(self, result: UncertaintyResult, windows: Sequence[Window], reduction: str = "mean") -> np.ndarray:
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        sums = window_sums(result.scores, windows)
        if reduction == "sum":
            return sums
        areas = np.array([h * w for _, _, h, w in windows], dtype=np.float64)
        return sums / areas

STRATEGIES: dict[str, type[Strategy]] = {}

def register(cls: type[Strategy]) -> type[Strategy]:
    STRATEGIES[cls.name] = cls
    return cls

def get_strategy(name: str, **options) -> Strategy:
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {sorted(STRATEGIES)}") from None
    return cls(**options)

class ProbabilityStrategy(Strategy):
    """A map computed pixel by pixel from the blended class logits of a plain prediction.

    Working on logits lets a strategy skip the softmax when its score has a
    closed form in them (entropy, margin); one that needs probabilities takes
    :func:`~dial.inference.predictors.softmax` of the block itself.
    """

    def from_logits(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, labels)`` for one ``(K, rows, W)`` block, which it may overwrite."""
        raise NotImplementedError

    def compute(self, model, image, clicks=()):
        scores, labels = logit_maps(model.predictor, image, self.from_logits, clicks)
        return UncertaintyResult(scores, labels)

@register
class RandomStrategy(ProbabilityStrategy):
    """Random order: the baseline every strategy must beat. The prediction is still run, for click costs."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def from_logits(self, logits):
        return self.rng.random(logits.shape[1:], dtype=np.float32), class_argmax(logits)

@register
class EntropyStrategy(ProbabilityStrategy):
    name = "entropy"

    def from_logits(self, logits):
        # One exp per class and one log per pixel, straight from the logits:
        # the normalised probabilities are never needed.
        return entropy_from_logits(logits)

@register
class MarginStrategy(ProbabilityStrategy):
    name = "margin"

    def from_logits(self, logits):
        return margin_from_logits(logits)

class TorchStrategy(Strategy):
    """A map from the torch network, tile by tile; outputs are (score, probabilities...) per tile."""

    def tile_outputs(self, model: AcquisitionModel, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute(self, model, image, clicks=()):
        network = model.torch_network()
        device = next(network.parameters()).device

        def outputs(batch: np.ndarray) -> np.ndarray:
            return self.tile_outputs(model, torch.from_numpy(batch).to(device)).float().cpu().numpy()

        blended = blend_tiles(image, model.manifest, outputs, 1 + model.manifest.n_classes, clicks)
        return UncertaintyResult(blended[0], class_argmax(blended[1:]))

@register
class McDropoutStrategy(TorchStrategy):
    """Dropout between encoder and decoder, kept on at inference; the variance over passes.

    Dropout sits after the encoder, so the encoder runs once per tile and only
    the decoder and head are repeated (``reuse_encoder=False`` repeats the
    whole network, for measuring what that saves).

    The ``passes`` dropout masks are drawn once per feature shape and used for
    every tile: five sampled sub-networks score the whole image, so scores
    compare across tiles, and the draw (8 % of the strategy's time when it was
    repeated per tile) happens once.
    """

    name = "mc_dropout"

    def __init__(self, passes: int = 5, p: float = 0.1, seed: int = 0, reuse_encoder: bool = True):
        if passes < 2:
            raise ValueError(f"mc_dropout needs at least 2 passes for a variance, got {passes}")
        if not 0.0 < p < 1.0:
            raise ValueError(f"dropout p must be in (0, 1), got {p}")
        self.passes, self.p, self.seed, self.reuse_encoder = passes, p, seed, reuse_encoder
        # The masks of the latest feature shapes (an image's tiles all share them).
        self._mask_key: tuple | None = None
        self._masks: list[list[torch.Tensor]] = []

    def _masks_for(self, features) -> list[list[torch.Tensor]]:
        """Per pass, one pre-scaled 0 or 1/(1-p) mask per feature, broadcast over the batch."""
        # features[0] is the input image itself in smp encoders, not an encoder block's output.
        shapes = tuple(tuple(f.shape[1:]) for f in features[1:])
        key = (shapes, features[0].device)
        if key != self._mask_key:
            generator = torch.Generator(device=features[0].device).manual_seed(self.seed)
            scale = 1.0 / (1.0 - self.p)
            self._masks = [[(torch.rand((1, *shape), generator=generator, device=features[0].device) >= self.p)
                            .float().mul_(scale) for shape in shapes] for _ in range(self.passes)]
            self._mask_key = key
        return self._masks  # a strategy instance serves one request, so no lock

    def tile_outputs(self, model, inputs):
        parts = NetworkParts(model.torch_network())
        with torch.inference_mode():
            features = parts.encoder(inputs)
            total = squares = None
            for index, masks in enumerate(self._masks_for(features)):
                if index and not self.reuse_encoder:
                    features = parts.encoder(inputs)
                dropped = [features[0]] + [f * m for f, m in zip(features[1:], masks)]
                probs = torch.softmax(parts.logits(dropped, inputs), dim=1)
                # Running sums: torch.var over a stacked pass axis took a fifth of the strategy's time.
                total = probs if total is None else total.add_(probs)
                squares = probs * probs if squares is None else squares.addcmul_(probs, probs)
            mean = total.div_(self.passes)
            variance = (squares.div_(self.passes) - mean * mean).clamp_(min=0.0).mean(dim=1, keepdim=True)
            return torch.cat([variance, mean], dim=1)


@register
class OdinStrategy(TorchStrategy):
    """ODIN: temperature scaling plus an input step that raises the predicted class.

    The step is ``epsilon`` of the input's full range in native units
    (1/255 is one grey level of uint8), applied to the image bands only,
    through each band's normalisation; click channels are left alone.
    """

    name = "odin"

    def __init__(self, temperature: float = 100.0, epsilon: float = 1.0 / 255.0):
        self.temperature, self.epsilon = temperature, epsilon

    def tile_outputs(self, model, inputs):
        network = model.torch_network()
        manifest = model.manifest
        full_range = 255.0 if manifest.input_dtype == "uint8" else 65535.0
        _, std = manifest.normalisation()
        step = torch.zeros(inputs.shape[1], device=inputs.device)
        step[: manifest.n_bands] = torch.from_numpy(self.epsilon * full_range / std)
        # Only the input's gradient is asked for, so autograd skips the weight
        # gradients; the weights' requires_grad flags are left alone, since
        # other threads may share the network.
        with torch.enable_grad():
            x = inputs.clone().requires_grad_(True)
            logits = network(x)
            loss = -torch.log_softmax(logits / self.temperature, dim=1).max(dim=1).values.sum()
            (grad,) = torch.autograd.grad(loss, x, allow_unused=True) if loss.requires_grad else (None,)
            if grad is None:  # a network whose output does not depend smoothly on its input
                grad = torch.zeros_like(x)
        with torch.inference_mode():
            perturbed = inputs - step[None, :, None, None] * torch.sign(grad)
            confidence = torch.softmax(network(perturbed) / self.temperature, dim=1).max(dim=1, keepdim=True).values
            return torch.cat([1.0 - confidence, torch.softmax(logits.detach(), dim=1)], dim=1)

@register
class ConfidNetStrategy(TorchStrategy):
    """1 - the ConfidNet head's predicted probability of the true class."""

    name = "confidnet"

    def tile_outputs(self, model, inputs):
        parts = NetworkParts(model.torch_network())
        head = model.head("confidnet", load_head)
        with torch.inference_mode():
            decoded = parts.decoder(parts.encoder(inputs))
            logits = parts.head(decoded, inputs)
            confidence = head(decoded, inputs.shape[-2:])
            return torch.cat([1.0 - confidence, torch.softmax(logits, dim=1)], dim=1)

@register
class MetaSegStrategy(Strategy):
    """1 - the IoU a regressor predicts for each predicted segment, painted on its pixels."""

    name = "metaseg"

    def compute(self, model, image, clicks=()):
        regressor = model.head("metaseg", load_regressor)
        probs = predict_probabilities(model.predictor, image, clicks)
        labels = class_argmax(probs)
        return UncertaintyResult(quality_map(probs, labels, regressor), labels)

@register
class MetaBoxStrategy(MetaSegStrategy):
    """MetaBox+: (sum of quality priority) x (sum of cost priority) over each box.

    Cost priority is 1 - the click-cost map (1 at each estimated polygon
    vertex), so boxes that need fewer clicks rank higher for the same
    expected gain.
    """

    name = "metabox"

    def compute(self, model, image, clicks=()):
        result = super().compute(model, image, clicks)
        result.extras["cost_map"] = click_cost_map(result.labels)
        return result

    def patch_scores(self, result, windows, reduction="mean"):
        quality = super().patch_scores(result, windows, reduction)
        cost_priority = super().patch_scores(UncertaintyResult(1.0 - result.extras["cost_map"], result.labels),
                                             windows, reduction)
        return quality * cost_priority
