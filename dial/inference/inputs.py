"""Turn native imagery plus clicks into the network's float input."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from dial.clicks import Click, encode_clicks
from dial.model.manifest import Manifest


def normalise(image: np.ndarray, manifest: Manifest) -> np.ndarray:
    """``(H, W, B)`` native dtype -> ``(B, H, W)`` float32 with the manifest's per-band statistics."""
    mean, std = manifest.normalisation()
    out = (image.astype(np.float32) - mean) / std
    return np.ascontiguousarray(np.moveaxis(out, -1, 0))


def network_input(
    image: np.ndarray,
    clicks: Sequence[Click],
    manifest: Manifest,
    origin: tuple[int, int] = (0, 0),
    annotations: bool = True,
) -> np.ndarray:
    """``(B + K, H, W)`` float32: normalised bands then one click channel per class.

    ``annotations=False`` zeroes the click channels, which is how DISCA
    trains so that the adapted weights carry the correction on their own.
    """
    bands = normalise(image, manifest)
    if annotations and clicks:
        channels = encode_clicks(clicks, image.shape[:2], manifest.n_classes,
                                 manifest.click_encoding.radius_px, origin=origin)
    else:
        channels = np.zeros((manifest.n_classes,) + image.shape[:2], dtype=np.float32)
    return np.concatenate([bands, channels], axis=0)
