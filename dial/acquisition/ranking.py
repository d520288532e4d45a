"""From a pixel priority map to ranked, non-overlapping patches with cost and click hints."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from dial.acquisition.cost import DEFAULT_TOLERANCE_PX, click_cost
from dial.acquisition.strategies import Strategy, UncertaintyResult
from dial.imagery.georef import Window

DEFAULT_PATCH_PX = 512
# The pixel-level experiments click where entropy is above its 90th percentile.
DEFAULT_HINT_QUANTILE = 0.9
DEFAULT_MAX_HINTS = 5


@dataclass(frozen=True)
class RankedPatch:
    """``window`` is where the patch lies in the image; ``hints`` are (row, col), most uncertain first."""

    rank: int
    score: float
    window: Window
    estimated_click_cost: float
    hints: tuple[tuple[int, int], ...]


def _starts(size: int, patch: int, stride: int) -> list[int]:
    if size <= patch:
        return [0]
    # The last patch ends at the border instead of running past it and being cut short: a cut patch is a
    # sliver (a real job's first patch was a 132x29 border window) whose mean is that of a few pixels, so
    # it wins on noise, and annotating a sliver is not the patch the user asked for.
    return list(range(0, size - patch, stride)) + [size - patch]


def patch_grid(height: int, width: int, patch_px: int = DEFAULT_PATCH_PX, stride_px: int | None = None) -> list[Window]:
    """Patches of side ``patch_px`` every ``stride_px`` (default: a tiling) covering the image, all full size:
    the last row and column of patches are moved in to end at the border, overlapping their neighbours.
    Only an image smaller than a patch gives a smaller one (the whole image)."""
    if patch_px < 1:
        raise ValueError(f"patch_px must be >= 1, got {patch_px}")
    stride = stride_px or patch_px
    if not 1 <= stride <= patch_px:
        raise ValueError(f"stride_px must be in [1, patch_px], got {stride}")
    return [Window(r, c, patch_px, patch_px).clip(height, width)
            for r in _starts(height, patch_px, stride) for c in _starts(width, patch_px, stride)]


def click_hints(scores: np.ndarray, window: Window, quantile: float = DEFAULT_HINT_QUANTILE,
                max_hints: int = DEFAULT_MAX_HINTS) -> tuple[tuple[int, int], ...]:
    """Pixels at or above the window's ``quantile`` of priority, most uncertain first, spread apart.

    Hints closer than an eighth of the window to a better one are skipped, so
    five hints do not land on five neighbouring pixels of one blob.
    """
    r0, c0, h, w = window
    values = scores[r0: r0 + h, c0: c0 + w]
    threshold = np.quantile(values, quantile)
    rows, cols = np.nonzero(values >= threshold)
    order = np.argsort(-values[rows, cols], kind="stable")[: 50 * max_hints]
    spacing2 = max(min(h, w) / 8.0, 2.0) ** 2
    chosen: list[tuple[int, int]] = []
    for i in order:
        r, c = int(rows[i]), int(cols[i])
        if all((r - a) ** 2 + (c - b) ** 2 >= spacing2 for a, b in chosen):
            chosen.append((r, c))
            if len(chosen) == max_hints:
                break
    return tuple((r0 + r, c0 + c) for r, c in chosen)


def iter_ranked_patches(
    strategy: Strategy,
    result: UncertaintyResult,
    *,
    patch_px: int = DEFAULT_PATCH_PX,
    stride_px: int | None = None,
    reduction: str = "mean",
    exclude: Sequence[Window] = (),
    max_patches: int = 0,
    cost_weighting: bool = False,
    hint_quantile: float = DEFAULT_HINT_QUANTILE,
    max_hints: int = DEFAULT_MAX_HINTS,
    tolerance_px: float = DEFAULT_TOLERANCE_PX,
) -> Iterator[RankedPatch]:
    """Best patch first. Patches overlapping ``exclude`` or an already chosen patch are skipped.

    With ``cost_weighting`` each score is divided by its estimated click cost
    (which then has to be computed for every patch); otherwise costs are
    computed only for the patches returned.
    """
    height, width = result.scores.shape
    windows = [w for w in patch_grid(height, width, patch_px, stride_px)
               if not any(w.overlaps(x) for x in exclude)]
    if not windows:
        return
    scores = np.asarray(strategy.patch_scores(result, windows, reduction), dtype=np.float64)
    costs: dict[int, float] = {}

    def cost_of(i: int) -> float:
        if i not in costs:
            costs[i] = float(click_cost(result.labels[windows[i].slices], tolerance_px).total)
        return costs[i]

    if cost_weighting:
        scores = scores / np.array([max(cost_of(i), 1.0) for i in range(len(windows))])
    chosen: list[Window] = []
    limit = max_patches or len(windows)
    for i in np.argsort(-scores, kind="stable"):
        window = windows[i]
        if stride_px and stride_px < patch_px and any(window.overlaps(w) for w in chosen):
            continue
        chosen.append(window)
        yield RankedPatch(len(chosen), float(scores[i]), window, cost_of(int(i)),
                          click_hints(result.scores, window, hint_quantile, max_hints))
        if len(chosen) >= limit:
            return


def rank_patches(strategy: Strategy, result: UncertaintyResult, **options) -> list[RankedPatch]:
    return list(iter_ranked_patches(strategy, result, **options))
