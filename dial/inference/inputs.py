"""Turn native imagery plus clicks into the network's float input."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from dial.clicks import Click, encode_clicks
from dial.model.manifest import Manifest


def normalise(image: np.ndarray, manifest: Manifest, out: np.ndarray | None = None) -> np.ndarray:
    """``(H, W, B)`` native dtype -> ``(B, H, W)`` float32 with the manifest's per-band statistics.

    ``out`` is filled in place when given, sparing a copy per tile.
    """
    if out is None:
        out = np.empty((image.shape[-1],) + image.shape[:2], dtype=np.float32)
    mean, std = manifest.normalisation()
    np.copyto(out, np.moveaxis(image, -1, 0), casting="unsafe")
    out -= mean[:, None, None]
    out *= (1.0 / std)[:, None, None]
    return out


def network_input(
    image: np.ndarray,
    clicks: Sequence[Click],
    manifest: Manifest,
    origin: tuple[int, int] = (0, 0),
    annotations: bool = True,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``(B + K, H, W)`` float32: normalised bands then one click channel per class.

    ``annotations=False`` zeroes the click channels, which is how DISCA
    trains so that the adapted weights carry the correction on their own.
    ``out`` (a ``(B + K, H, W)`` float32 view, e.g. one slot of a batch) is
    filled in place, sparing the copies that dominate whole-raster overhead.
    """
    height, width = image.shape[:2]
    n_bands = manifest.n_bands
    if out is None:
        out = np.empty((n_bands + manifest.n_classes, height, width), dtype=np.float32)
    normalise(image, manifest, out=out[:n_bands])
    if annotations and clicks:
        out[n_bands:] = encode_clicks(clicks, (height, width), manifest.n_classes,
                                      manifest.click_encoding.radius_px, origin=origin)
    else:
        out[n_bands:] = 0.0
    return out
