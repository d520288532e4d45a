"""ConfidNet: a small head that predicts the probability of the true class.

The head reads the decoder's last features (32 channels at full resolution
in our LinkNets). It follows the paper's shape -- one transposed conv, then
3x3 convs with 32, 120, 64, 32 and 1 channels and a sigmoid -- but runs on
features average-pooled by ``pool`` (16: the transposed conv brings them to
1/8 resolution) and upsamples its one-channel output. At full resolution the
120-channel convs alone cost several times the whole segmenter on CPU, and
at 1/4 resolution still 43 % of it; patch ranking needs no per-pixel sharpness.

Training keeps the segmenter frozen and regresses, with Adam and MSE, the
segmenter's softmax probability of the true class at every labelled pixel.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from dial.acquisition.model import file_sha256, record_head
from dial.imagery.dataset import Dataset
from dial.inference.inputs import normalise
from dial.model.manifest import Manifest
from dial.model.network import NetworkParts

HEAD_FILE = "confidnet.pt"


class ConfidNetHead(nn.Module):
    def __init__(self, in_channels: int = 32, pool: int = 16):
        super().__init__()
        self.in_channels, self.pool = in_channels, pool
        widths = (32, 120, 64, 32)
        layers: list[nn.Module] = [nn.AvgPool2d(pool) if pool > 1 else nn.Identity(),
                                   nn.ConvTranspose2d(in_channels, in_channels, 2, stride=2), nn.ReLU(inplace=True)]
        previous = in_channels
        for width in widths:
            layers += [nn.Conv2d(previous, width, 3, padding=1), nn.ReLU(inplace=True)]
            previous = width
        layers.append(nn.Conv2d(previous, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor, size) -> torch.Tensor:
        out = self.body(features)
        if tuple(out.shape[-2:]) != tuple(size):
            out = nn.functional.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)
        return torch.sigmoid(out)


def load_head(path: Path, entry: dict) -> ConfidNetHead:
    head = ConfidNetHead(int(entry.get("in_channels", 32)), int(entry.get("pool", 8)))
    head.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return head.eval()


@dataclass(frozen=True)
class ConfidNetConfig:
    iterations: int = 300
    batch_size: int = 4
    crop_px: int = 256
    learning_rate: float = 1e-3
    pool: int = 16
    seed: int = 0


def _crops(images, masks, config: ConfidNetConfig, rng: np.random.Generator):
    xs, ys = [], []
    for _ in range(config.batch_size):
        i = int(rng.integers(len(images)))
        image, mask = images[i], masks[i]
        h, w = mask.shape
        ch, cw = min(config.crop_px, h) // 32 * 32, min(config.crop_px, w) // 32 * 32
        r, c = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        xs.append(image[:, r: r + ch, c: c + cw])
        ys.append(mask[r: r + ch, c: c + cw])
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys).astype(np.int64))


def train_head(network: nn.Module, manifest: Manifest, dataset: Dataset, config: ConfidNetConfig = ConfidNetConfig(),
               progress: Callable[[int, int, float], None] | None = None) -> tuple[ConfidNetHead, dict]:
    """Train a head on ``dataset`` for a frozen ``network``; returns the head and a training summary."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    network.eval()
    for p in network.parameters():
        p.requires_grad_(False)
    zeros = np.zeros((manifest.n_classes,), dtype=np.float32)
    images, masks = [], []
    for _, image, mask in dataset:
        x = normalise(image, manifest)
        images.append(np.concatenate([x, np.broadcast_to(zeros[:, None, None], (manifest.n_classes,) + x.shape[1:])]))
        masks.append(mask)
    with torch.no_grad():
        parts = NetworkParts(network)
        probe = parts.decoder(parts.encoder(torch.zeros(1, manifest.in_channels, 64, 64)))
    head = ConfidNetHead(probe.shape[1], config.pool)
    optimiser = torch.optim.Adam(head.parameters(), lr=config.learning_rate)
    started, losses = time.perf_counter(), []
    for step in range(config.iterations):
        x, y = _crops(images, masks, config, rng)
        with torch.no_grad():
            decoded = parts.decoder(parts.encoder(x))
            probs = torch.softmax(parts.head(decoded, x), dim=1)
            valid = y < manifest.n_classes
            target = probs.gather(1, torch.where(valid, y, 0)[:, None])[:, 0]
        confidence = head(decoded, x.shape[-2:])[:, 0]
        loss = ((confidence - target) ** 2)[valid].mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, config.iterations, float(np.mean(losses[-20:])))
    summary = {"iterations": config.iterations, "batch_size": config.batch_size, "crop_px": config.crop_px,
               "learning_rate": config.learning_rate, "seconds": round(time.perf_counter() - started, 1),
               "final_mse": float(np.mean(losses[-20:])), "images": [s.name for s in dataset.samples]}
    return head.eval(), summary


def save_head(head: ConfidNetHead, directory: Path, summary: dict) -> Path:
    path = Path(directory) / HEAD_FILE
    torch.save(head.state_dict(), path)
    record_head(directory, "confidnet", {"file": HEAD_FILE, "sha256": file_sha256(path),
                                         "in_channels": head.in_channels, "pool": head.pool, "training": summary})
    return path
