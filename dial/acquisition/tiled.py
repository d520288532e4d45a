"""Tiled computation of acquisition maps, with the core tiler's windows and blending.

Probability-based maps are computed from :func:`iter_probability_rows`, the
same blended probabilities a plain prediction streams, so a map costs a
prediction plus a cheap per-pixel reduction. Torch strategies produce their
own per-tile outputs (a score channel plus the class probabilities), which
are blended with the same ramp weights so tile seams do not show in the map.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from dial.clicks import Click, clicks_in_window
from dial.inference.inputs import network_input
from dial.inference.tiling import TileGrid, blend_weights, iter_probability_rows, pad_to_multiple
from dial.model.manifest import Manifest

TileOutputs = Callable[[np.ndarray], np.ndarray]


def probability_maps(predictor, image: np.ndarray, reduce: Callable[[np.ndarray], np.ndarray],
                     clicks: Sequence[Click] = (), **tiling) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, labels)``: ``reduce(probs[K, rows, W]) -> (rows, W)`` applied row block by row block."""
    height, width = image.shape[:2]
    scores = np.empty((height, width), dtype=np.float32)
    labels = np.empty((height, width), dtype=np.uint8)

    def read(r: int, c: int, h: int, w: int) -> np.ndarray:
        return image[r: r + h, c: c + w]

    for top, bottom, block in iter_probability_rows(predictor, read, height, width, clicks, **tiling):
        scores[top:bottom] = reduce(block)
        labels[top:bottom] = block.argmax(axis=0)
    return scores, labels


def full_probabilities(predictor, image: np.ndarray, clicks: Sequence[Click] = (), **tiling) -> np.ndarray:
    from dial.inference.tiling import predict_probabilities

    return predict_probabilities(predictor, image, clicks, **tiling)


def blend_tiles(image: np.ndarray, manifest: Manifest, outputs: TileOutputs, n_out: int,
                clicks: Sequence[Click] = (), *, tile_px: int | None = None, overlap_px: int | None = None,
                batch_size: int = 4) -> np.ndarray:
    """``(n_out, H, W)`` float32: ``outputs(inputs[N, C, h, w]) -> (N, n_out, h, w)`` blended over tiles."""
    height, width = image.shape[:2]
    tile_px = tile_px or manifest.tile_px
    overlap_px = manifest.overlap_px if overlap_px is None else overlap_px
    grid = TileGrid(height, width, tile_px, overlap_px)
    th, tw = grid.tile_height, grid.tile_width
    weights = blend_weights(th, tw, overlap_px)
    radius = manifest.click_encoding.radius_px
    acc = np.zeros((n_out, height, width), dtype=np.float32)
    wsum = np.zeros((height, width), dtype=np.float32)
    windows = grid.windows()
    for start in range(0, len(windows), batch_size):
        batch = windows[start: start + batch_size]
        inputs = [pad_to_multiple(network_input(image[r: r + h, c: c + w],
                                                clicks_in_window(clicks, (r, c, h, w), radius),
                                                manifest, origin=(r, c)))
                  for r, c, h, w in batch]
        out = outputs(np.stack(inputs))[:, :, :th, :tw]
        for tile, (r, c, h, w) in zip(out, batch):
            acc[:, r: r + h, c: c + w] += tile * weights
            wsum[r: r + h, c: c + w] += weights
    acc /= wsum[None]
    return acc
