"""The click-fusion network: how it is named, how it starts from a base, and that ONNX runs it as torch does."""
import numpy as np
import pytest
import torch

from dial.model.network import ClickFusion, build_network, split_architecture
from dial.model.onnx_export import export_onnx


def test_architecture_names_say_whether_clicks_are_re_injected():
    assert split_architecture("Linknet") == ("Linknet", False)
    assert split_architecture("Linknet+click-fusion") == ("Linknet", True)
    with pytest.raises(ValueError, match="click-fusion"):
        split_architecture("Linknet+clicks")
    assert isinstance(build_network("Linknet+click-fusion", "mobilenet_v2", 9, 6), ClickFusion)


def test_a_fused_network_starts_as_its_base_predicts():
    torch.manual_seed(0)
    base = build_network("Linknet", "mobilenet_v2", 9, 6).eval()
    fused = build_network("Linknet+click-fusion", "mobilenet_v2", 9, 6)
    fused.net.load_state_dict(base.state_dict())
    fused.eval()
    x = torch.randn(1, 9, 64, 64)
    x[:, 3:] = torch.rand(1, 6, 64, 64)
    with torch.no_grad():
        assert torch.equal(fused(x), base(x))


def test_onnx_export_of_the_fused_network_matches_torch(tmp_path):
    from dial.inference.predictors import OnnxPredictor, TorchPredictor
    from dial.clicks import ClickEncoding
    from dial.model.manifest import BandNorm, Manifest, ModelClass

    torch.manual_seed(0)
    net = build_network("Linknet+click-fusion", "mobilenet_v2", 5, 2)
    with torch.no_grad():  # trained-looking fusion weights, so the click path takes part
        for p in list(net.fusion.parameters()) + list(net.click_logits.parameters()):
            p.normal_(0, 0.3)
    net.eval()
    manifest = Manifest(name="f", version="1", architecture="Linknet+click-fusion", encoder="mobilenet_v2",
                        classes=(ModelClass("a", "#000000"), ModelClass("b", "#FFFFFF")),
                        bands=tuple(BandNorm(n, 0.0, 1.0) for n in ("red", "green", "blue")),
                        input_dtype="uint8", click_encoding=ClickEncoding(radius_px=10.0))
    path = export_onnx(net, 5, tmp_path / "model.onnx")
    x = np.random.default_rng(0).normal(size=(2, 5, 96, 128)).astype(np.float32)
    x[:, 3:] = np.abs(x[:, 3:])
    a = OnnxPredictor(path, manifest, provider="cpu").logits(x)
    b = TorchPredictor(net, manifest).logits(x)
    x_no_clicks = x.copy()
    x_no_clicks[:, 3:] = 0
    assert np.abs(a - OnnxPredictor(path, manifest, provider="cpu").logits(x_no_clicks)).max() > 1e-2
    np.testing.assert_allclose(a, b, atol=1e-3, rtol=0)
