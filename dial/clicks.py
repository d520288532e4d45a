"""Clicks and their encoding as annotation channels.

A click is a pixel plus the class the user says it belongs to. The network
sees each click as a Euclidean distance "cone" in its class's channel: 1 at
the click, falling linearly to 0 at ``radius_px``. ``encode_clicks`` is the one
encoding used by training, evaluation and serving alike; the DISIR reference
code encoded differently at training and serving, and that mismatch is the
bug this single function exists to prevent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class Click:
    """A user click: pixel row and column in the full image, and a class id."""

    row: int
    col: int
    class_id: int


@dataclass(frozen=True)
class ClickEncoding:
    """How clicks become channels; recorded in every model manifest."""

    radius_px: float = 10.0
    kind: str = "distance_cone"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "radius_px": self.radius_px}

    @classmethod
    def from_dict(cls, data: dict) -> "ClickEncoding":
        kind = data.get("kind", "distance_cone")
        if kind != "distance_cone":
            raise ValueError(f"unknown click encoding kind {kind!r}; DIAL knows 'distance_cone'")
        radius = float(data["radius_px"])
        if not radius > 0:
            raise ValueError(f"click encoding radius_px must be > 0, got {radius}")
        return cls(radius_px=radius, kind=kind)


def encode_clicks(
    clicks: Iterable[Click],
    shape: tuple[int, int],
    n_classes: int,
    radius_px: float,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Encode clicks as ``(n_classes, H, W)`` float32 cones.

    ``shape`` is the size of the window being encoded and ``origin`` its
    top-left corner in full-image pixels, so a tile of a large raster is
    encoded exactly as the same pixels of the whole image would be: clicks
    just outside the window still reach into it.

    Each pixel takes the nearest click of its class: ``max(0, 1 - d / r)``.
    Work is proportional to clicks x r^2, not to the window size.
    """
    height, width = shape
    channels = np.zeros((n_classes, height, width), dtype=np.float32)
    r = float(radius_px)
    reach = int(np.ceil(r))
    row0, col0 = origin
    for click in clicks:
        if not 0 <= click.class_id < n_classes:
            raise ValueError(f"click class_id {click.class_id} is outside 0..{n_classes - 1}")
        r_c = click.row - row0
        c_c = click.col - col0
        top, bottom = max(r_c - reach, 0), min(r_c + reach + 1, height)
        left, right = max(c_c - reach, 0), min(c_c + reach + 1, width)
        if top >= bottom or left >= right:
            continue
        rows = np.arange(top, bottom, dtype=np.float32)[:, None] - r_c
        cols = np.arange(left, right, dtype=np.float32)[None, :] - c_c
        cone = np.clip(1.0 - np.sqrt(rows * rows + cols * cols) / r, 0.0, None)
        view = channels[click.class_id, top:bottom, left:right]
        np.maximum(view, cone, out=view)
    return channels


def clicks_in_window(clicks: Sequence[Click], window: tuple[int, int, int, int], margin_px: float) -> list[Click]:
    """Clicks whose cone reaches the window ``(row_off, col_off, height, width)``."""
    row_off, col_off, height, width = window
    m = int(np.ceil(margin_px))
    return [
        c
        for c in clicks
        if row_off - m <= c.row < row_off + height + m and col_off - m <= c.col < col_off + width + m
    ]
