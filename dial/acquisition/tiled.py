"""Tiled computation of acquisition maps, with the core tiler's windows and blending.

Probability-based maps are computed from :func:`~dial.inference.tiling.iter_blended_rows`, the
same blended logits a plain prediction streams, so a map costs a prediction
plus a cheap per-pixel reduction. Torch strategies produce their
own per-tile outputs (a score channel plus the class probabilities), which
are blended with the same ramp weights so tile seams do not show in the map.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from dial.clicks import Click
from dial.inference.tiling import array_reader, iter_blended_rows
from dial.model.manifest import Manifest

TileOutputs = Callable[[np.ndarray], np.ndarray]


LogitReduction = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def logit_maps(predictor, image: np.ndarray, reduce: LogitReduction, clicks: Sequence[Click] = (),
               **tiling) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, labels)``: ``reduce(logits[K, rows, W]) -> (scores, labels)``, row block by row block.

    The logits are the blended (weight-normalised) ones; ``reduce`` may
    overwrite them. It runs on the tiler's blending thread, overlapping the
    model, as a plain prediction's argmax does.
    """
    height, width = image.shape[:2]
    scores = np.empty((height, width), dtype=np.float32)
    labels = np.empty((height, width), dtype=np.uint8)
    for top, bottom, (row_scores, row_labels) in iter_blended_rows(
            predictor, array_reader(image), height, width, clicks, output="logits", reduce_rows=reduce, **tiling):
        scores[top:bottom], labels[top:bottom] = row_scores, row_labels
    return scores, labels


def blend_tiles(image: np.ndarray, manifest: Manifest, outputs: TileOutputs, n_out: int,
                clicks: Sequence[Click] = (), *, tile_px: int | None = None, overlap_px: int | None = None,
                batch_size: int = 4) -> np.ndarray:
    """``(n_out, H, W)`` float32: ``outputs(inputs[N, C, h, w]) -> (N, n_out, h, w)`` blended over tiles.

    The core tiler does the windows, encoding and ramp blending; only the
    per-tile function differs from a plain prediction.
    """
    height, width = image.shape[:2]
    out = np.empty((n_out, height, width), dtype=np.float32)
    rows = iter_blended_rows(_ManifestOnly(manifest), array_reader(image), height, width, clicks,
                             tile_px=tile_px, overlap_px=overlap_px, batch_size=batch_size, output="logits",
                             tile_outputs=outputs, channels=n_out)
    for top, bottom, block in rows:
        out[:, top:bottom] = block
    return out


class _ManifestOnly:
    """What the tiler needs of a predictor when ``tile_outputs`` does the computing."""

    def __init__(self, manifest: Manifest):
        self.manifest = manifest
