"""Training samples in which a click carries what the image does not.

On the few images a model is trained on, the network is soon right almost
everywhere, so clicks drawn from the ground truth repeat what the image
already says and the network learns to ignore them. Two samplers make the
clicks necessary:

* ``swap_labels`` relabels whole segments of the target -- connected
  components of the ground truth, or superpixels of one true class -- to
  another class, and puts one to three clicks of the new class inside each.
  The image says one thing, the clicks another, and the target follows the
  clicks over the whole segment, so the network must learn that a click
  decides the region around it; every crop gives new samples.
* ``corrupt_prior`` turns a ground truth into a plausible wrong map (classes
  eroded or dilated, components dropped into their surroundings or given
  another class), the kind of previous mask a correction model starts from.

Both are pure functions of the mask and a generator.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from dial.clicks import Click
from dial.imagery.legend import IGNORE_INDEX

# Segments smaller than this are too small to teach propagation and are
# where the image is least ambiguous anyway (a lone pixel of road).
MIN_SEGMENT_PX = 256
# Clicks go this far inside a segment, where annotators and the evaluation
# clicker put them; thin segments fall back to any of their pixels.
INTERIOR_PX = 3


def candidate_segments(mask: np.ndarray, segments: np.ndarray | None = None, *,
                       min_px: int = MIN_SEGMENT_PX, ignore_index: int = IGNORE_INDEX) -> list[np.ndarray]:
    """Boolean masks of the segments a swap may relabel, each of one true class.

    Without ``segments`` these are the 4-connected components of each class
    of ``mask``; with ``segments`` (superpixel ids) they are each superpixel's
    pixels of one class. Only those of at least ``min_px`` pixels count.
    """
    found = []
    for c in np.unique(mask[mask != ignore_index]):
        region = mask == c
        if segments is None:
            labelled, count = ndimage.label(region)
        else:
            # Give each (superpixel, class) pair its own id.
            labelled = np.where(region, segments.astype(np.int64) + 1, 0)
            count = int(labelled.max())
        sizes = np.bincount(labelled.ravel(), minlength=count + 1)
        for index in np.flatnonzero(sizes >= min_px):
            if index:
                found.append(labelled == index)
    return found


def clicks_inside(region: np.ndarray, class_id: int, n_clicks: int, rng: np.random.Generator) -> list[Click]:
    """``n_clicks`` clicks of ``class_id`` at random interior pixels of ``region``."""
    interior = ndimage.binary_erosion(region, iterations=INTERIOR_PX)
    pool = np.flatnonzero(interior if interior.any() else region)
    picks = rng.choice(pool, size=n_clicks, replace=pool.size < n_clicks)
    width = region.shape[1]
    return [Click(int(p // width), int(p % width), int(class_id)) for p in picks]


def swap_labels(mask: np.ndarray, rng: np.random.Generator, n_classes: int, *,
                segments: np.ndarray | None = None, max_swaps: int = 2, max_clicks_per_swap: int = 3,
                min_px: int = MIN_SEGMENT_PX, ignore_index: int = IGNORE_INDEX) -> tuple[np.ndarray, list[Click]]:
    """A copy of ``mask`` with 1..``max_swaps`` segments given another class, and clicks that say so.

    Each swapped segment gets 1..``max_clicks_per_swap`` clicks of its new
    class inside it. Returns the mask unchanged and no clicks when no segment
    is large enough or there is only one class.
    """
    if n_classes < 2:
        return mask.copy(), []
    pool = candidate_segments(mask, segments, min_px=min_px, ignore_index=ignore_index)
    out = mask.copy()
    if not pool:
        return out, []
    n_swaps = int(rng.integers(1, min(max_swaps, len(pool)) + 1))
    clicks: list[Click] = []
    for index in rng.choice(len(pool), size=n_swaps, replace=False):
        region = pool[int(index)]
        true_class = int(mask[region][0])
        new_class = int(rng.choice([c for c in range(n_classes) if c != true_class]))
        out[region] = new_class
        clicks += clicks_inside(region, new_class, int(rng.integers(1, max_clicks_per_swap + 1)), rng)
    return out, clicks


def corrupt_prior(mask: np.ndarray, rng: np.random.Generator, n_classes: int, *, p_morph: float = 0.5,
                  max_radius_px: int = 4, p_drop: float = 0.3, p_swap: float = 0.2,
                  min_px: int = 16, max_changed_fraction: float = 0.5,
                  ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """A plausible wrong label map made from ``mask``, as a base model's prior would be.

    Per class, with probability ``p_morph``, the class is dilated or eroded
    by 1..``max_radius_px`` pixels (borders in the wrong place); then each
    component of at least ``min_px`` pixels is, with probability ``p_drop``,
    dropped into the true class that surrounds it most (a missed object), or with
    probability ``p_swap`` given another class (a confusion), while drops
    and swaps together stay within ``max_changed_fraction`` of the valid
    pixels. Ignore pixels stay ignore; the input is not changed.
    """
    valid = mask != ignore_index
    out = mask.copy()
    for c in rng.permutation(np.unique(mask[valid])):
        if rng.random() >= p_morph:
            continue
        radius = int(rng.integers(1, max_radius_px + 1))
        region = out == c
        if rng.random() < 0.5:
            out[ndimage.binary_dilation(region, iterations=radius) & valid] = c
        else:
            # The crop's edge is not a border of the class: it does not erode there.
            shrunk = ndimage.binary_erosion(region, iterations=radius, border_value=1)
            lost = region & ~shrunk
            if lost.any() and (valid & ~region).any():
                # Eroded pixels take the nearest other class, as a too-small prediction would.
                _, (rows, cols) = ndimage.distance_transform_edt(region | ~valid, return_indices=True)
                out[lost] = out[rows[lost], cols[lost]]
    # Drops and swaps of big components could otherwise relabel the whole
    # crop, and a prior that is wrong everywhere is no base model's output.
    budget_px = max_changed_fraction * valid.sum()
    for c in rng.permutation(np.unique(mask[valid])):
        labelled, count = ndimage.label(mask == c)
        for index in rng.permutation(np.arange(1, count + 1)):
            component = labelled == index
            size = int(component.sum())
            if size < min_px or size > budget_px:
                continue
            draw = rng.random()
            if draw < p_drop:
                ring = ndimage.binary_dilation(component, iterations=1) & ~component & valid
                around = mask[ring]
                around = around[around != c]
                if around.size:
                    out[component] = np.bincount(around, minlength=n_classes).argmax()
                    budget_px -= size
            elif draw < p_drop + p_swap and n_classes > 1:
                out[component] = rng.choice([k for k in range(n_classes) if k != c])
                budget_px -= size
    out[~valid] = ignore_index
    return out
