"""Export a model to ONNX with dynamic batch, height and width."""
from __future__ import annotations

from pathlib import Path

import torch

from dial.files import atomic_path

OPSET = 17


def export_onnx(model: torch.nn.Module, in_channels: int, path: Path, sample_px: int = 64) -> Path:
    """Write ``path`` atomically; height and width must be multiples of 32 at run time."""
    model = model.eval()
    dummy = torch.zeros(1, in_channels, sample_px, sample_px)
    path = Path(path)
    with atomic_path(path) as tmp, torch.inference_mode():
        # The TorchScript-based exporter: it needs no onnxscript at run time,
        # takes dynamic_axes directly, and matched eager torch to 1e-6 here.
        torch.onnx.export(
            model, (dummy,), str(tmp), opset_version=OPSET, dynamo=False,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                          "logits": {0: "batch", 2: "height", 3: "width"}},
        )
    return path
