"""Lets segmentation-models-pytorch import on a CPU-only torch.

The only torchvision wheel on the package registry is built against CUDA
torch. With the CPU torch, its compiled op library fails to load and its
Python side then registers fake kernels for ``torchvision::nms`` and
``torchvision::qnms``, ops that were never defined, so ``import torchvision``
raises ``RuntimeError: operator torchvision::nms does not exist``; smp and
timm import torchvision and fail with it.

Defining the two schemas in a ``torch.library`` fragment before the first
import is enough for the pure-Python model definitions that DIAL uses. The
torchvision.ops kernels still raise if anyone calls them; DIAL never does.

The shim acts only when the import fails with exactly that error, so a
matching torch/torchvision pair (a CUDA image, say) is left alone.
"""
from __future__ import annotations

import importlib
import sys

_MISSING_OP_ERROR = "operator torchvision::nms does not exist"
_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
# Kept alive for the life of the process: a dropped fragment unregisters its ops.
_fragment = None


def _forget_partial_import() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def ensure_torchvision_importable() -> bool:
    """Import torchvision, patching the missing op schemas if needed.

    Returns True when the shim had to be applied.
    """
    global _fragment
    try:
        importlib.import_module("torchvision")
        return False
    except RuntimeError as error:
        if _MISSING_OP_ERROR not in str(error):
            raise
    _forget_partial_import()
    import torch

    _fragment = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS.values():
        _fragment.define(schema)
    importlib.import_module("torchvision")
    return True
