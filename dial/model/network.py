"""The click-aware segmentation network: any smp architecture, no downloaded weights.

``ARCH+click-fusion`` (e.g. ``Linknet+click-fusion``) adds a late path that
sees the click channels again next to the decoder's last features. In a
plain smp network the clicks enter only at the first convolution, next to
the image, and a network that can segment from the image soon learns to
ignore them; re-injected near the output (as RITM and FocalClick do with
their click maps) a click decides the pixels around it through a few
convolutions instead of the whole encoder.
"""
from __future__ import annotations

import torch
from torch import nn

from dial.model.torchvision_shim import ensure_torchvision_importable

CLICK_FUSION = "click-fusion"
# The fusion's residual multiplied by the click cones: no click, no change, so
# a fused network predicts exactly as its base until a click lands, and a
# click changes nothing beyond its cone.
GATED_CLICK_FUSION = "gated-click-fusion"
FUSION_OPTIONS = {CLICK_FUSION: False, GATED_CLICK_FUSION: True}  # option -> gated
FUSION_CHANNELS = 16


class ClickFusion(nn.Module):
    """An smp network whose logits get a residual from ``(decoder features, click channels)``.

    The residual's last convolution starts at zero, so a base network loaded
    into ``net`` predicts exactly as before until training teaches the
    residual. Dilated 3x3 convolutions let a click reach about 13 px past its
    cone, at about a third of the base's cost (1x1 then two 16-channel 3x3s).
    """

    def __init__(self, net: nn.Module, n_classes: int, gated: bool = False):
        super().__init__()
        self.net = net
        self.n_classes = n_classes
        self.gated = gated
        features = net.segmentation_head[0].in_channels
        self.fusion = nn.Sequential(
            nn.Conv2d(features + n_classes, FUSION_CHANNELS, 1), nn.ReLU(inplace=True),
            nn.Conv2d(FUSION_CHANNELS, FUSION_CHANNELS, 3, padding=2, dilation=2), nn.ReLU(inplace=True),
            nn.Conv2d(FUSION_CHANNELS, FUSION_CHANNELS, 3, padding=4, dilation=4), nn.ReLU(inplace=True),
            nn.Conv2d(FUSION_CHANNELS, n_classes, 1),
        )
        # A direct 1x1 path from click channels to logits: the one thing every
        # click must do (its own pixels take its class) is then one layer deep.
        self.click_logits = nn.Conv2d(n_classes, n_classes, 1)
        for layer in (self.fusion[-1], self.click_logits):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def head(self, decoded: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits from the decoder's last features and the network input (for its click channels)."""
        clicks = x[:, x.shape[1] - self.n_classes:]
        residual = self.fusion(torch.cat([decoded, clicks], dim=1)) + self.click_logits(clicks)
        if self.gated:
            residual = residual * clicks.amax(dim=1, keepdim=True)
        return self.net.segmentation_head(decoded) + residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net.decoder(self.net.encoder(x)), x)


class NetworkParts:
    """A DIAL network seen as encoder -> decoder -> head, for the methods that work between the stages.

    The fast DISCA variant caches encoder features and trains the rest;
    MC dropout drops encoder features; ConfidNet reads the decoder's last
    features. ``head(decoded, x)`` takes the network input too, since a
    click-fusion head sees the click channels again.
    """

    def __init__(self, network: nn.Module):
        self._fused = network if isinstance(network, ClickFusion) else None
        base = network.net if self._fused is not None else network
        if not all(hasattr(base, a) for a in ("encoder", "decoder", "segmentation_head")):
            raise ValueError(f"{type(network).__name__} is not an encoder/decoder/segmentation_head network "
                             "(an smp architecture, optionally with +click-fusion)")
        self.encoder, self.decoder, self._segmentation_head = base.encoder, base.decoder, base.segmentation_head
        self.encoder_prefix = "net.encoder." if self._fused is not None else "encoder."

    def head(self, decoded: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self._fused is not None:
            return self._fused.head(decoded, x)
        return self._segmentation_head(decoded)

    def logits(self, features: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(features), x)


def split_architecture(architecture: str) -> tuple[str, str | None]:
    """``"Linknet+click-fusion"`` -> ``("Linknet", "click-fusion")``: the smp class and its click fusion, if any."""
    base, _, extra = architecture.partition("+")
    if extra and extra not in FUSION_OPTIONS:
        raise ValueError(f"unknown architecture option {extra!r} in {architecture!r}; DIAL knows "
                         + " and ".join(f"'+{option}'" for option in FUSION_OPTIONS))
    return base, extra or None


def build_network(architecture: str, encoder: str, in_channels: int, n_classes: int) -> torch.nn.Module:
    """An smp network with ``in_channels = bands + n_classes`` and random init.

    ``encoder_weights=None`` always: DIAL never downloads weights at run time;
    every model is trained by ``dial train``.
    """
    ensure_torchvision_importable()
    import segmentation_models_pytorch as smp

    base, fusion = split_architecture(architecture)
    try:
        cls = getattr(smp, base)
    except AttributeError:
        raise ValueError(f"unknown smp architecture {base!r}") from None
    net = cls(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=n_classes)
    return ClickFusion(net, n_classes, gated=FUSION_OPTIONS[fusion]) if fusion else net
