"""The ONNX export of every shipped model matches its torch network: serving runs what was trained."""
from pathlib import Path

import numpy as np
import pytest

from dial.clicks import Click
from dial.inference.inputs import network_input
from dial.inference.predictors import OnnxPredictor, TorchPredictor
from dial.model.onnx_export import export_onnx
from dial.model.repository import ModelRepository

SHIPPED = Path(__file__).resolve().parents[2] / "models"
LATEST = [(name, ModelRepository(SHIPPED).versions(name)[-1]) for name in ModelRepository(SHIPPED).names()]


def test_models_are_shipped():
    assert {name for name, _ in LATEST} >= {"landcover", "buildings"}


@pytest.mark.parametrize(("name", "version"), LATEST, ids=[f"{n}:{v}" for n, v in LATEST])
def test_onnx_export_of_the_shipped_model_matches_torch(name, version, tmp_path):
    net, manifest = ModelRepository(SHIPPED).load_torch(f"{name}:{version}")
    path = export_onnx(net, manifest.in_channels, tmp_path / "model.onnx")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (160, 224, manifest.n_bands), dtype=np.uint8)
    # Clicks of two classes, so the click channels take part in the comparison.
    clicks = [Click(40, 50, 0), Click(100, 180, manifest.n_classes - 1)]
    x = np.stack([network_input(image, clicks, manifest), network_input(image, [], manifest)])
    a = OnnxPredictor(path, manifest, provider="cpu").logits(x)
    b = TorchPredictor(net, manifest).logits(x)
    assert a.shape == b.shape == (2, manifest.n_classes, 160, 224)
    assert np.abs(a[0] - a[1]).max() > 1e-3  # the clicks reach the output
    np.testing.assert_allclose(a, b, atol=1e-3, rtol=0)
