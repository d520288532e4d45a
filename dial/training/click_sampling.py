"""Simulated clicks for training, sampled from the ground truth.

About 30 % of samples get no clicks, so the network still gives a good map
on its own; the rest get 1..N clicks. Pixels are weighted by the inverse
frequency of their class in the crop: without that balancing the network
learns to ignore clicks on rare classes (on Potsdam it cost the car class).
Clicks are drawn from object interiors, which beat border clicks in DISIR.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from dial.clicks import Click
from dial.imagery.legend import IGNORE_INDEX

INTERIOR_PX = 2


def sample_training_clicks(
    mask: np.ndarray,
    rng: np.random.Generator,
    n_classes: int,
    *,
    max_clicks: int,
    p_no_clicks: float = 0.3,
    ignore_index: int = IGNORE_INDEX,
) -> list[Click]:
    if rng.random() < p_no_clicks:
        return []
    n_clicks = int(rng.integers(1, max_clicks + 1))
    valid = mask != ignore_index
    # Interior pixels: a click inside a region is what annotators do and what
    # the evaluation clicker does; fall back to any pixel for thin classes.
    interior = np.zeros_like(valid)
    for c in np.unique(mask[valid]):
        region = mask == c
        eroded = ndimage.binary_erosion(region, iterations=INTERIOR_PX)
        interior |= eroded if eroded.any() else region
    candidates = np.flatnonzero(interior & valid)
    if candidates.size == 0:
        return []
    classes = mask.ravel()[candidates]
    counts = np.bincount(classes, minlength=n_classes).astype(np.float64)
    weights = 1.0 / counts[classes]
    weights /= weights.sum()
    picks = rng.choice(candidates, size=n_clicks, replace=True, p=weights)
    width = mask.shape[1]
    return [Click(int(p // width), int(p % width), int(mask.ravel()[p])) for p in picks]
