"""A scene whose uncertain window is known exactly, and models built to be unsure there."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dial.clicks import ClickEncoding
from dial.model.manifest import BandNorm, Manifest, ModelClass

HARD = (64, 128, 64, 64)  # (row_off, col_off, height, width): one cell of a 64 px patch grid
SIZE = 256


def stub_manifest(n_classes: int = 2) -> Manifest:
    return Manifest(name="stub", version="1", architecture="Stub", encoder="none",
                    classes=tuple(ModelClass(f"c{k}", "#000000") for k in range(n_classes)),
                    bands=tuple(BandNorm(b, 127.5, 50.0) for b in ("red", "green", "blue")),
                    input_dtype="uint8", click_encoding=ClickEncoding(5.0), tile_px=128, overlap_px=32)


def hard_image(window=HARD, size: int = SIZE) -> np.ndarray:
    """Band 0 is 255 inside ``window`` and 0 elsewhere; the stubs read it as "this pixel is hard"."""
    image = np.zeros((size, size, 3), dtype=np.uint8)
    r, c, h, w = window
    image[r: r + h, c: c + w, 0] = 255
    image[..., 1] = 90
    return image


class _Encoder(nn.Module):
    def forward(self, x):
        hard = (x[:, :1] > 0).float()
        # Outside: evidence for class 0 only. Inside: evidence for class 1 just
        # above the head's bias for class 0, so the classes nearly tie there.
        return [x, torch.cat([3.0 * (1.0 - hard), 3.0 * hard], dim=1)]


class _Decoder(nn.Module):
    def forward(self, features):
        return features[-1]


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(2.9))

    def forward(self, f):
        return torch.stack([f[:, 0] + self.bias, f[:, 1]], dim=1)


class StubNetwork(nn.Module):
    """smp-shaped (encoder -> feature list, decoder, segmentation_head): sure outside HARD, a near tie inside."""

    def __init__(self):
        super().__init__()
        self.encoder, self.decoder, self.segmentation_head = _Encoder(), _Decoder(), _Head()

    def forward(self, x):
        return self.segmentation_head(self.decoder(self.encoder(x)))


class StubConfidence(nn.Module):
    """A ConfidNet stand-in: low confidence where the decoder features show a tie."""

    def forward(self, decoded, size):
        return torch.sigmoid(decoded[:, :1] - decoded[:, 1:2])


class StubRegressor:
    """Predicts IoU = 1 - the segment's mean entropy (feature column "E")."""

    def predict(self, features):
        return 1.0 - features[:, 5]
