"""The simulated annotator: where a user would click next, given the truth.

Interactive evaluation replaces the user by a rule that reads the ground
truth. The rule follows the AC/DISIR evaluation and RITM:

* an error region is a 4-connected set of pixels that share their true class
  and are predicted wrong (ignore pixels are never errors);
* the annotator corrects the largest region -- or, as in the DISIR code, one
  drawn at random among the ``random_top_k`` largest -- and labels the click
  with the region's true class;
* the click goes to the pixel farthest from the region's boundary (the
  maximum of its Euclidean distance transform, RITM's ``Clicker``), with the
  image border counted as boundary, so clicks land inside objects, which the
  AC paper found to beat clicks on borders;
* ``mode="class_cycling"`` is the class-dependent variant: the target class
  turns over from click to click, so small classes are corrected too instead
  of the largest class taking every click;
* as in RITM, a pixel already clicked is not clicked again while the region
  has another pixel, so an ignored click does not repeat forever.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from dial.clicks import Click

MODES = ("largest", "class_cycling")


class SimulatedAnnotator:
    """Clicks at the centre of the largest error region; keeps its clicks and can undo them.

    ``random_top_k=1`` is deterministic; with ``k > 1`` a region is drawn
    uniformly among the ``k`` largest, from a generator seeded with ``seed``.
    ``reset()`` restarts that generator, so the clicks on one image do not
    depend on which images were annotated before it.
    """

    def __init__(
        self,
        n_classes: int,
        *,
        ignore_index: int = 255,
        mode: str = "largest",
        random_top_k: int = 1,
        seed: int | None = 0,
    ):
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if random_top_k < 1:
            raise ValueError(f"random_top_k must be >= 1, got {random_top_k}")
        self.n_classes = n_classes
        self.ignore_index = ignore_index
        self.mode = mode
        self.random_top_k = random_top_k
        self.seed = seed
        self.reset()

    @property
    def clicks(self) -> list[Click]:
        """The clicks made so far, oldest first (a copy)."""
        return [click for click, _ in self._history]

    def reset(self) -> None:
        """Forget every click and restart the random generator and the class cycle."""
        self._history: list[tuple[Click, tuple[dict, int]]] = []
        self._rng = np.random.default_rng(self.seed)
        self._next_class = 0

    def undo(self) -> Click | None:
        """Remove the last click and return it; the next click is then chosen as it was."""
        if not self._history:
            return None
        click, (rng_state, next_class) = self._history.pop()
        self._rng.bit_generator.state = rng_state
        self._next_class = next_class
        return click

    def next_click(
        self,
        prediction: np.ndarray,
        ground_truth: np.ndarray,
        region: tuple[int, int, int, int] | None = None,
    ) -> Click | None:
        """The next click on ``prediction``, recorded in ``clicks``; None when nothing is wrong.

        ``region = (row_off, col_off, height, width)`` restricts the search to
        that window (one click per patch, in the patch's largest error); the
        click is still in full-image coordinates.
        """
        prediction = np.asarray(prediction)
        ground_truth = np.asarray(ground_truth)
        if prediction.shape != ground_truth.shape or prediction.ndim != 2:
            raise ValueError(
                f"prediction {prediction.shape} and ground_truth {ground_truth.shape} must be the same (H, W)"
            )
        row_off, col_off = 0, 0
        if region is not None:
            row_off, col_off, height, width = _check_region(region, ground_truth.shape)
            prediction = prediction[row_off: row_off + height, col_off: col_off + width]
            ground_truth = ground_truth[row_off: row_off + height, col_off: col_off + width]

        valid = ground_truth != self.ignore_index
        if (valid & ((ground_truth < 0) | (ground_truth >= self.n_classes))).any():
            raise ValueError(f"ground truth holds class ids outside 0..{self.n_classes - 1} other than ignore")
        rows, cols = np.nonzero((prediction != ground_truth) & valid)
        if rows.size == 0:
            return None
        true_class = ground_truth[rows, cols]
        # Regions are found from the error pixels' coordinates, each class on
        # the bounding box of its own errors: the work follows the errors, not
        # the image size, once a prediction is mostly right.
        rows += row_off
        cols += col_off

        state = (self._rng.bit_generator.state, self._next_class)
        candidates = []
        if self.mode == "largest":
            for class_id in range(self.n_classes):
                on_class = true_class == class_id
                candidates += self._regions(rows[on_class], cols[on_class], class_id)
            # A stable sort on size alone: ties keep class order, then raster order.
            candidates.sort(key=lambda region: -region[0])
        else:
            for step in range(self.n_classes):
                class_id = (self._next_class + step) % self.n_classes
                on_class = true_class == class_id
                candidates = self._regions(rows[on_class], cols[on_class], class_id)
                if candidates:
                    self._next_class = (class_id + 1) % self.n_classes
                    break
        k = min(self.random_top_k, len(candidates))
        _, origin, mask, class_id = candidates[int(self._rng.integers(k))] if k > 1 else candidates[0]

        row, col = self._centre(origin, mask)
        click = Click(row=row, col=col, class_id=class_id)
        self._history.append((click, state))
        return click

    def _regions(self, rows: np.ndarray, cols: np.ndarray, class_id: int) -> list:
        """The ``random_top_k`` largest 4-connected regions among the given error pixels.

        Each is ``(size_px, (top, left), region mask in its bounding box, class_id)``,
        largest first, in full-image coordinates.
        """
        if rows.size == 0:
            return []
        top, left = int(rows.min()), int(cols.min())
        local_rows, local_cols = rows - top, cols - left
        crop = np.zeros((int(local_rows.max()) + 1, int(local_cols.max()) + 1), dtype=bool)
        crop[local_rows, local_cols] = True
        labels, count = ndimage.label(crop)
        label_of = labels[local_rows, local_cols]
        sizes = np.bincount(label_of, minlength=count + 1)[1:]
        regions = []
        for index in np.argsort(-sizes, kind="stable")[: self.random_top_k]:
            on_region = label_of == index + 1
            r, c = local_rows[on_region], local_cols[on_region]
            r0, r1, c0, c1 = int(r.min()), int(r.max()) + 1, int(c.min()), int(c.max()) + 1
            mask = labels[r0:r1, c0:c1] == index + 1
            regions.append((int(sizes[index]), (top + r0, left + c0), mask, class_id))
        return regions

    def _centre(self, origin: tuple[int, int], mask: np.ndarray) -> tuple[int, int]:
        """Full-image pixel of ``mask`` farthest from its boundary, avoiding pixels already clicked."""
        # Zero padding makes the image border a boundary too (RITM pads the
        # error mask the same way); the box is tight, so elsewhere the padding
        # is exactly the outside of the region.
        distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        top, left = origin
        height, width = mask.shape
        clicked = [(c.row - top, c.col - left) for c in self.clicks]
        clicked = [(r, c) for r, c in clicked if 0 <= r < height and 0 <= c < width]
        if clicked:
            free = distance.copy()
            rows, cols = zip(*clicked)
            free[list(rows), list(cols)] = 0.0
            if free.max() > 0:
                distance = free
        best_row, best_col = np.unravel_index(int(np.argmax(distance)), distance.shape)
        return top + int(best_row), left + int(best_col)


def _check_region(region, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    row_off, col_off, height, width = (int(v) for v in region)
    if height < 1 or width < 1 or row_off < 0 or col_off < 0 or row_off + height > shape[0] or col_off + width > shape[1]:
        raise ValueError(f"region {tuple(region)} is not a non-empty window inside an image of shape {shape}")
    return row_off, col_off, height, width
