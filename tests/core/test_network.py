"""The click-fusion network: how it is named, how it starts from a base, and that ONNX runs it as torch does."""
import numpy as np
import pytest
import torch

from dial.model.network import ClickFusion, build_network, split_architecture
from dial.model.onnx_export import export_onnx


def test_architecture_names_say_whether_clicks_are_re_injected():
    assert split_architecture("Linknet") == ("Linknet", None)
    assert split_architecture("Linknet+click-fusion") == ("Linknet", "click-fusion")
    assert split_architecture("Linknet+gated-click-fusion") == ("Linknet", "gated-click-fusion")
    with pytest.raises(ValueError, match="click-fusion"):
        split_architecture("Linknet+clicks")
    assert isinstance(build_network("Linknet+click-fusion", "mobilenet_v2", 9, 6), ClickFusion)
    assert build_network("Linknet+gated-click-fusion", "mobilenet_v2", 9, 6).gated


def _trained_looking(net):
    with torch.no_grad():  # nonzero fusion weights, so the click path takes part
        for p in list(net.fusion.parameters()) + list(net.click_logits.parameters()):
            p.normal_(0, 0.3)
    return net.eval()


def test_a_gated_fusion_changes_nothing_without_clicks_and_nothing_beyond_a_clicks_cone():
    from dial.clicks import Click, encode_clicks

    torch.manual_seed(0)
    base = build_network("Linknet", "mobilenet_v2", 9, 6).eval()
    gated = build_network("Linknet+gated-click-fusion", "mobilenet_v2", 9, 6)
    gated.net.load_state_dict(base.state_dict())
    _trained_looking(gated)
    x = torch.randn(1, 9, 96, 96)
    x[:, 3:] = 0
    with torch.no_grad():
        assert torch.equal(gated(x), base(x))
        x[0, 3:] = torch.from_numpy(encode_clicks([Click(row=48, col=48, class_id=2)], (96, 96), 6, radius_px=12.0))
        changed = (gated(x) - base(x)).abs().amax(dim=1)[0] > 0
    rows, cols = np.nonzero(changed.numpy())
    assert len(rows) > 100  # the click does something ...
    assert np.hypot(rows - 48, cols - 48).max() < 12  # ... and only inside its 12 px cone


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


@pytest.mark.parametrize("architecture", ["Linknet+click-fusion", "Linknet+gated-click-fusion"])
def test_onnx_export_of_the_fused_network_matches_torch(tmp_path, architecture):
    from dial.inference.predictors import OnnxPredictor, TorchPredictor
    from dial.clicks import ClickEncoding
    from dial.model.manifest import BandNorm, Manifest, ModelClass

    torch.manual_seed(0)
    net = _trained_looking(build_network(architecture, "mobilenet_v2", 5, 2))
    manifest = Manifest(name="f", version="1", architecture=architecture, encoder="mobilenet_v2",
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
