"""DISCA: continual adaptation of a click-aware network to the user's clicks.

Each adaptation runs a few optimiser steps on

    L = mean over clicked pixels of CE(f(x), c)  +  lambda * mean |softmax(f(x)) - p0|

where ``p0`` is the softmax of the prediction made on the image before any
adaptation. The second term (the "L1 recall") keeps the map close to where
it started, which is what stops the network from forgetting everything it
knew in order to fit a handful of pixels.

Design choices, and why:

* **Click targets.** A click supervises a disc of ``target_radius_px``
  pixels around it (3 px: 29 pixels), not a single pixel, so that one click
  weighs as much as the few pixels a user would mark with a brush; later
  clicks win where discs overlap.
* **Crops.** Training never sees the whole image: it runs on ``crop_px``
  squares (a multiple of 32) centred on the clicks. Each step takes
  ``max_crops`` of them: the newest click's, and a seeded draw among the
  rest. The cost of a step is then fixed, however large the image and however
  many clicks, and every click keeps teaching: with only the newest crops, a
  click whose crop fell out was no longer in the loss, and its correction
  faded as later clicks pulled the weights elsewhere.
* **Click channels while training.** Each click is withheld from the input
  with probability ``annotation_dropout``; 1.0 (the default) zeroes the
  click channels entirely, as in DISCA, so the weights must carry the
  correction on their own. The prediction then uses the adapted weights
  *plus* every click as channels (AC).
* **BatchNorm stays in eval mode**: statistics of a few crops of one image
  would wreck the running statistics learned over a whole dataset.
* **Variants.** ``full`` updates every parameter. ``fast`` freezes the
  encoder, caches its features for each crop (the encoder never changes, so
  the cache stays valid across adaptations) and runs only the decoder and
  the segmentation head at each step. The fast variant needs the click
  channels zeroed while training, since its cached features were computed
  without clicks.
* **Optimiser.** Adam: it is invariant to the scale of the loss, so one
  learning rate holds whether the CE is mean- or sum-reduced and however
  many pixels are clicked (the SGD rates of the papers, 2e-6..5e-6, belong
  to sum-reduced losses and do not transfer). See ``DEFAULT_LEARNING_RATES``.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dial.adaptation.settings import (  # noqa: F401  (DISCA's settings, importable from here as before)
    DEFAULT_LEARNING_RATES, DEFAULT_RECALL_WEIGHT, VARIANTS, DiscaSettings,
)
from dial.clicks import Click
from dial.imagery.legend import IGNORE_INDEX
from dial.inference.classwise import class_argmax
from dial.inference.inputs import network_input
from dial.inference.predictors import TorchPredictor
from dial.inference.tiling import STRIDE_MULTIPLE, pad_to_multiple, predict_probabilities
from dial.model.manifest import Manifest
from dial.model.network import NetworkParts

# Crop windows whose encoder features the fast variant keeps (about 4 MB
# each for a 256 px crop); a window evicted is recomputed when drawn again.
FEATURE_CACHE_WINDOWS = 32


def disca_loss(logits: torch.Tensor, targets: torch.Tensor, p0: torch.Tensor,
               recall_weight: float) -> torch.Tensor:
    """The DISCA loss for ``(N, K, H, W)`` logits, ``(N, H, W)`` targets and ``(N, K, H, W)`` p0.

    ``targets`` holds a class id on clicked pixels and ``IGNORE_INDEX``
    elsewhere; the CE is the mean over clicked pixels (0 when there are
    none), the recall term the mean over every pixel and class.
    """
    annotated = targets != IGNORE_INDEX
    if annotated.any():
        ce = F.cross_entropy(logits, targets.long(), ignore_index=IGNORE_INDEX)
    else:
        ce = logits.sum() * 0.0
    recall = (torch.softmax(logits, dim=1) - p0).abs().mean()
    return ce + recall_weight * recall


def click_targets(clicks: Sequence[Click], window: tuple[int, int, int, int], radius_px: int) -> np.ndarray:
    """``(h, w)`` uint8 targets for a window ``(row, col, h, w)``: discs around clicks, IGNORE elsewhere."""
    row0, col0, height, width = window
    targets = np.full((height, width), IGNORE_INDEX, dtype=np.uint8)
    r = int(radius_px)
    offsets = np.arange(-r, r + 1)
    disc = (offsets[:, None] ** 2 + offsets[None, :] ** 2) <= r * r
    for click in clicks:
        rr, cc = click.row - row0, click.col - col0
        top, left = rr - r, cc - r
        t0, l0 = max(top, 0), max(left, 0)
        t1, l1 = min(rr + r + 1, height), min(cc + r + 1, width)
        if t0 >= t1 or l0 >= l1:
            continue
        patch = disc[t0 - top : t1 - top, l0 - left : l1 - left]
        view = targets[t0:t1, l0:l1]
        view[patch] = click.class_id
    return targets


def crop_windows(clicks: Sequence[Click], shape: tuple[int, int], crop_px: int,
                 max_crops: int | None = None) -> list[tuple[int, int, int, int]]:
    """Windows ``(row, col, h, w)`` covering the clicks, newest first; at most ``max_crops`` (None: all).

    A click already well inside a chosen window (16 px from its edge) shares
    it; otherwise it gets a window centred on it, clamped to the image.
    Windows are at most ``crop_px`` wide and cover the image when it is smaller.
    """
    height, width = shape
    h, w = min(crop_px, height), min(crop_px, width)
    margin = 16
    windows: list[tuple[int, int, int, int]] = []
    for click in reversed(clicks):
        inside = False
        for r, c, wh, ww in windows:
            row_ok = (r + margin <= click.row or r == 0) and (click.row < r + wh - margin or r + wh == height)
            col_ok = (c + margin <= click.col or c == 0) and (click.col < c + ww - margin or c + ww == width)
            if row_ok and col_ok:
                inside = True
                break
        if inside:
            continue
        if max_crops is not None and len(windows) == max_crops:
            break
        r = int(np.clip(click.row - h // 2, 0, height - h))
        c = int(np.clip(click.col - w // 2, 0, width - w))
        windows.append((r, c, h, w))
    return windows


class DiscaAdapter:
    """One image, one private copy of a model, and its adaptation on the image's clicks.

    ``start(image)`` records ``p0`` from the current weights (the base
    weights, or the weights left by earlier images in sequential learning).
    ``adapt(clicks)`` runs one adaptation; ``predict_probabilities(clicks)``
    segments the whole image with the adapted weights plus AC.
    """

    def __init__(self, model: torch.nn.Module, manifest: Manifest, settings: DiscaSettings | None = None,
                 *, copy_model: bool = True):
        self.settings = (settings or DiscaSettings()).for_model(manifest).validate()
        self.manifest = manifest
        self.model = copy.deepcopy(model) if copy_model else model
        # channels_last: oneDNN's convolutions are faster in it on 2 CPU threads
        # (a full adaptation 2.6 -> 2.2 s on a 512² tile) and no slower on 1.
        self.model.eval().to(memory_format=torch.channels_last)
        self.device = next(self.model.parameters()).device
        for p in self.model.parameters():
            p.requires_grad_(False)
        # The fast variant trains past the encoder; its stages are found once, here.
        self._parts = NetworkParts(self.model) if self.settings.variant == "fast" else None
        self.trainable = self._trainable_names()
        params = dict(self.model.named_parameters())
        for name in self.trainable:
            params[name].requires_grad_(True)
        self.optimiser = torch.optim.Adam([params[n] for n in self.trainable], lr=self.settings.learning_rate)
        self.generator = torch.Generator().manual_seed(self.settings.seed)
        self.adaptations = 0
        self.image: np.ndarray | None = None
        self.p0: np.ndarray | None = None
        # Encoder features per crop window (fast variant), least recently used
        # first; bounded, since a session may hold up to a thousand clicks.
        self._features: OrderedDict[tuple, list[torch.Tensor]] = OrderedDict()

    def _trainable_names(self) -> list[str]:
        names = [n for n, _ in self.model.named_parameters()]
        if self.settings.variant == "fast":
            return [n for n in names if not n.startswith(self._parts.encoder_prefix)]
        return names

    # -- image and p0 ------------------------------------------------------
    def start(self, image: np.ndarray, p0: np.ndarray | None = None) -> np.ndarray:
        """Take a new image; ``p0`` is computed (or restored) without clicks. Returns p0 ``(K, H, W)``."""
        self.image = image
        self._features.clear()
        if p0 is None:
            p0 = predict_probabilities(self.predictor(), image, annotations=False)
        self.p0 = p0.astype(np.float16)
        return self.p0

    def predictor(self) -> TorchPredictor:
        return TorchPredictor(self.model, self.manifest)

    def predict_probabilities(self, clicks: Sequence[Click] = ()) -> np.ndarray:
        self._require_image()
        return predict_probabilities(self.predictor(), self.image, clicks)

    def predict_labels(self, clicks: Sequence[Click] = ()) -> np.ndarray:
        return class_argmax(self.predict_probabilities(clicks))

    def _require_image(self) -> None:
        if self.image is None or self.p0 is None:
            raise RuntimeError("start(image) must come before adapting or predicting")

    # -- adaptation --------------------------------------------------------
    def _sample(self, clicks: Sequence[Click], window, withhold: bool) -> tuple[np.ndarray, ...]:
        """One crop's network input, click targets and p0, padded to the network's stride."""
        s = self.settings
        r, c, h, w = window
        keep = list(clicks)
        if not withhold and s.annotation_dropout > 0:
            draw = torch.rand(len(keep), generator=self.generator).numpy()
            keep = [k for k, u in zip(keep, draw) if u >= s.annotation_dropout]
        x = pad_to_multiple(network_input(self.image[r : r + h, c : c + w], keep, self.manifest, origin=(r, c),
                                          annotations=not withhold and bool(keep)))
        t = click_targets(clicks, window, s.target_radius_px)
        t = np.pad(t, ((0, x.shape[1] - h), (0, x.shape[2] - w)), constant_values=IGNORE_INDEX)
        p0 = pad_to_multiple(self.p0[:, r : r + h, c : c + w].astype(np.float32))
        return x, t, p0

    def _encoder_features(self, window, x: torch.Tensor) -> list[torch.Tensor]:
        key = tuple(window)
        if key in self._features:
            self._features.move_to_end(key)
        else:
            with torch.no_grad():
                self._features[key] = [f.detach() for f in self._parts.encoder(x)]
            while len(self._features) > max(FEATURE_CACHE_WINDOWS, self.settings.max_crops):
                self._features.popitem(last=False)
        return self._features[key]

    def _step_windows(self, n_windows: int) -> tuple[int, ...]:
        """Indices of the windows one step trains on: the newest click's and a draw among the others (one crop: any)."""
        k = self.settings.max_crops
        if n_windows <= k:
            return tuple(range(n_windows))
        if k == 1:
            return (int(torch.randint(n_windows, (1,), generator=self.generator)),)
        others = torch.randperm(n_windows - 1, generator=self.generator)[: k - 1]
        return (0, *sorted(int(i) + 1 for i in others))

    def adapt(self, clicks: Sequence[Click], steps: int | None = None) -> float:
        """Run ``steps`` optimiser steps on the clicks; returns the last loss."""
        self._require_image()
        if not clicks:
            raise ValueError("adaptation needs at least one click")
        s = self.settings
        steps = s.steps if steps is None else int(steps)
        windows = crop_windows(clicks, self.image.shape[:2], s.crop_px)
        loss_value = float("nan")
        self.model.eval()
        # With click inputs always withheld, a crop's sample is the same at every
        # step of this call and is built once; otherwise its clicks are drawn anew.
        withhold = s.variant == "fast" or s.annotation_dropout >= 1
        samples: dict[int, tuple[np.ndarray, ...]] = {}
        for _ in range(steps):
            chosen = self._step_windows(len(windows))
            for i in chosen:
                if i not in samples or not withhold:
                    samples[i] = self._sample(clicks, windows[i], withhold)
            x, targets, p0 = (torch.from_numpy(np.stack(part)).to(self.device)
                              for part in zip(*(samples[i] for i in chosen)))
            if s.variant == "fast":
                # Windows share a size, so their cached features stack into one batch.
                per_window = [self._encoder_features(windows[i], x[j : j + 1]) for j, i in enumerate(chosen)]
                features = [torch.cat(level, dim=0) for level in zip(*per_window)]
                logits = self._parts.logits(features, x)
            else:
                logits = self.model(x)
            loss = disca_loss(logits, targets, p0, s.recall_weight)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            loss_value = float(loss.detach())
        self.adaptations += 1
        return loss_value

    # -- state -------------------------------------------------------------
    def state_dict(self) -> dict:
        """What a session must keep to resume: trainable weights, optimiser, counters (copies)."""
        params = dict(self.model.named_parameters())
        return {
            "weights": {n: params[n].detach().clone() for n in self.trainable},
            "optimiser": copy.deepcopy(self.optimiser.state_dict()),
            "adaptations": self.adaptations,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        params = dict(self.model.named_parameters())
        missing = set(self.trainable) - set(state["weights"])
        if missing:
            raise ValueError(f"adaptation state lacks {len(missing)} trainable tensors (e.g. {sorted(missing)[0]})")
        with torch.no_grad():
            for name in self.trainable:
                params[name].copy_(state["weights"][name])
        self.optimiser.load_state_dict(state["optimiser"])
        self.adaptations = int(state["adaptations"])
        if "generator" in state:
            self.generator.set_state(state["generator"])


def adapted_network(model: torch.nn.Module, manifest: Manifest, settings: DiscaSettings,
                    state: dict | None) -> torch.nn.Module:
    """A copy of ``model`` carrying an adaptation ``state`` (from :meth:`DiscaAdapter.state_dict`), for inference.

    ``settings`` say which tensors the state holds (the fast variant keeps the encoder's).
    ``model`` itself is left untouched.
    """
    adapter = DiscaAdapter(model, manifest, settings)
    if state is not None:
        adapter.load_state_dict(state)
    return adapter.model.requires_grad_(False)
