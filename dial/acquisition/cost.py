"""How many clicks a region takes to annotate with polygons, from a label map.

Following MetaBox+, the outline of each connected segment of one class is
traced and simplified with Ramer-Douglas-Peucker (OpenCV's ``findContours``
and ``approxPolyDP``, both in C: ranking costs every returned patch, and a
noisy prediction holds hundreds of segments per patch); every kept vertex is
one click. Inside a box the clicks are counted as:

* polygon clicks: kept vertices strictly inside the box;
* intersection clicks: vertices on the box border where the outline leaves
  the border (the box's own sides and corners are given, not clicked);
* class clicks: one per segment, to name its class.

A box of one class costs a single class click; a square building inside it
costs 4 + 1 more. Holes are not traced (what fills them is annotated on its
own), but a boundary shared by two segments that meet at the box border is
counted for both, as an annotation tool without shared edges would need.
Outlines run through the centres of a segment's edge pixels, 8-connected.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# RDP tolerance in pixels: below about 1 px the staircase of a straight
# diagonal edge survives as vertices; much above 3 px rounded shapes collapse
# to triangles.
DEFAULT_TOLERANCE_PX = 2.0
# Specks smaller than this are not drawn as polygons by an annotator (they
# vanish into the surrounding polygon).
MIN_SEGMENT_PX = 16
# Outline vertices are pixel centres, so a vertex on the window's first or
# last row or column is on the border.
_BORDER_EPS = 0.5


@dataclass(frozen=True)
class ClickCost:
    polygon: int
    intersection: int
    classes: int

    @property
    def total(self) -> int:
        return self.polygon + self.intersection + self.classes


def segment_polygons(labels: np.ndarray, tolerance_px: float = DEFAULT_TOLERANCE_PX,
                     ignore_index: int | None = None, min_segment_px: int = MIN_SEGMENT_PX):
    """Yield ``(class_id, outline vertices (N, 2) int as (row, col))`` per segment, in ``labels``' pixels."""
    for class_id in np.unique(labels):
        if ignore_index is not None and class_id == ignore_index:
            continue
        mask = (labels == class_id).astype(np.uint8)
        # Same 8-connectivity as the contour follower; specks are dropped
        # before tracing, which keeps the per-outline Python loop short.
        _, components, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        keep = stats[:, cv2.CC_STAT_AREA] >= min_segment_px
        keep[0] = False
        if not keep.any():
            continue
        mask = keep.astype(np.uint8)[components]
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if len(contours) < int(keep.sum()):
            # A segment sits in a hole of another segment of its class, which
            # the outermost outlines miss. RETR_CCOMP finds it, at the price of
            # tracing every hole (other classes' specks make thousands).
            contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
            contours = [c for c, (_, _, _, parent) in zip(contours, hierarchy[0]) if parent == -1]
        for contour in contours:
            yield int(class_id), cv2.approxPolyDP(contour, tolerance_px, True)[:, 0, ::-1]


def _on_border(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, 4) booleans: top, bottom, left, right side of the window."""
    r, c = points[:, 0], points[:, 1]
    return np.stack([r < _BORDER_EPS, r > height - 1 - _BORDER_EPS,
                     c < _BORDER_EPS, c > width - 1 - _BORDER_EPS], axis=1)


def click_cost(labels: np.ndarray, tolerance_px: float = DEFAULT_TOLERANCE_PX,
               ignore_index: int | None = 255) -> ClickCost:
    """The clicks to annotate the whole of ``labels`` (a patch's label map) as polygons."""
    rings = [ring for _, ring in segment_polygons(labels, tolerance_px, ignore_index)]
    if not rings:
        return ClickCost(0, 0, 0)
    # All outlines at once: a noisy patch holds hundreds, and per-ring numpy
    # calls would cost more than tracing them.
    lengths = np.array([len(r) for r in rings])
    vertices = np.concatenate(rings)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    following = np.arange(1, len(vertices) + 1)
    following[ends - 1] = starts
    sides = _on_border(vertices, *labels.shape)
    border = sides.any(axis=1)
    # An edge runs along the border when both ends lie on the same side; a
    # border vertex is an intersection click unless both its edges run along it.
    along = (sides & sides[following]).any(axis=1)
    along_before = np.empty_like(along)
    along_before[following] = along
    intersection = int((border & ~(along & along_before)).sum())
    return ClickCost(int((~border).sum()), intersection, len(rings))


def click_cost_map(labels: np.ndarray, tolerance_px: float = DEFAULT_TOLERANCE_PX) -> np.ndarray:
    """(H, W) float32, 1 at every RDP vertex of the predicted segments' outlines, else 0."""
    height, width = labels.shape
    out = np.zeros((height, width), dtype=np.float32)
    for _, ring in segment_polygons(labels, tolerance_px, None):
        inside = ~_on_border(ring, height, width).any(axis=1)
        out[ring[inside, 0], ring[inside, 1]] = 1.0
    return out
