"""The click-aware segmentation network: any smp architecture, no downloaded weights."""
from __future__ import annotations

import torch

from dial.model.torchvision_shim import ensure_torchvision_importable


def build_network(architecture: str, encoder: str, in_channels: int, n_classes: int) -> torch.nn.Module:
    """An smp network with ``in_channels = bands + n_classes`` and random init.

    ``encoder_weights=None`` always: DIAL never downloads weights at run time;
    every model is trained by ``dial train``.
    """
    ensure_torchvision_importable()
    import segmentation_models_pytorch as smp

    try:
        cls = getattr(smp, architecture)
    except AttributeError:
        raise ValueError(f"unknown smp architecture {architecture!r}") from None
    return cls(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=n_classes)
