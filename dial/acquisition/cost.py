"""How many clicks a region takes to annotate with polygons, from a label map.

Following MetaBox+, each connected segment of one class is traced
(``skimage.measure.find_contours``) and simplified with Ramer-Douglas-Peucker
(``approximate_polygon``); every kept vertex is one click. Inside a box the
clicks are counted as:

* polygon clicks: kept vertices strictly inside the box;
* intersection clicks: vertices on the box border where the outline leaves
  the border (the box's own sides and corners are given, not clicked);
* class clicks: one per segment, to name its class.

A box of one class costs a single class click; a square building inside it
costs 4 + 1 more. Holes are not traced (what fills them is annotated on its
own), but a boundary shared by two segments that meet at the box border is
counted for both, as an annotation tool without shared edges would need.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.measure import approximate_polygon, find_contours

# RDP tolerance in pixels: below about 1 px the marching-squares staircase of
# a straight diagonal edge survives as vertices; much above 3 px rounded
# shapes collapse to triangles.
DEFAULT_TOLERANCE_PX = 2.0
# Specks smaller than this are not drawn as polygons by an annotator (they
# vanish into the surrounding polygon), and tracing the thousands of them a
# noisy prediction holds would dominate the ranking time.
MIN_SEGMENT_PX = 16
# Marching squares puts a window-border contour at -0.5 (or size - 0.5) and a
# chamfered corner next to it at 0.0; both are on the border.
_BORDER_EPS = 0.75


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
    """Yield ``(class_id, outline vertices (N, 2) as (row, col))`` per segment.

    Vertices are in ``labels``' pixel coordinates, the ring's repeated last
    vertex dropped.
    """
    for class_id in np.unique(labels):
        if ignore_index is not None and class_id == ignore_index:
            continue
        components, count = ndimage.label(labels == class_id)
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        for index, box in enumerate(ndimage.find_objects(components), start=1):
            if box is None or sizes[index] < min_segment_px:
                continue
            crop = np.pad(components[box] == index, 1).astype(np.float32)
            contours = find_contours(crop, 0.5)
            # The outline is the contour spanning the widest box; the others
            # are holes, which the segments inside them fill when annotated.
            outline = max(contours, key=lambda c: np.ptp(c[:, 0]) * np.ptp(c[:, 1]) + len(c) * 1e-9)
            ring = approximate_polygon(outline, tolerance_px)
            if len(ring) > 1 and np.allclose(ring[0], ring[-1]):
                ring = ring[:-1]
            yield int(class_id), ring + np.array([box[0].start - 1, box[1].start - 1])


def _on_border(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, 4) booleans: top, bottom, left, right side of the window."""
    r, c = points[:, 0], points[:, 1]
    return np.stack([r <= -0.5 + _BORDER_EPS, r >= height - 0.5 - _BORDER_EPS,
                     c <= -0.5 + _BORDER_EPS, c >= width - 0.5 - _BORDER_EPS], axis=1)


def click_cost(labels: np.ndarray, tolerance_px: float = DEFAULT_TOLERANCE_PX,
               ignore_index: int | None = 255) -> ClickCost:
    """The clicks to annotate the whole of ``labels`` (a patch's label map) as polygons."""
    height, width = labels.shape
    polygon = intersection = classes = 0
    for _, ring in segment_polygons(labels, tolerance_px, ignore_index):
        classes += 1
        sides = _on_border(ring, height, width)
        border = sides.any(axis=1)
        # An edge runs along the border when both ends lie on the same side.
        along = (sides & np.roll(sides, -1, axis=0)).any(axis=1)
        leaves = ~along | ~np.roll(along, 1)
        polygon += int((~border).sum())
        intersection += int((border & leaves).sum())
    return ClickCost(polygon, intersection, classes)


def click_cost_map(labels: np.ndarray, tolerance_px: float = DEFAULT_TOLERANCE_PX) -> np.ndarray:
    """(H, W) float32, 1 at every RDP vertex of the predicted segments' outlines, else 0."""
    height, width = labels.shape
    out = np.zeros((height, width), dtype=np.float32)
    for _, ring in segment_polygons(labels, tolerance_px, None):
        inside = ~_on_border(ring, height, width).any(axis=1)
        rows = np.clip(np.rint(ring[inside, 0]).astype(int), 0, height - 1)
        cols = np.clip(np.rint(ring[inside, 1]).astype(int), 0, width - 1)
        out[rows, cols] = 1.0
    return out
