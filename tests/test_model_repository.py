import json
import shutil

import numpy as np
import pytest

from dial.clicks import Click
from dial.inference.inputs import network_input
from dial.inference.predictors import OnnxPredictor, TorchPredictor, choose_providers
from dial.inference.tiling import pad_to_multiple, predict_probabilities
from dial.model.manifest import Manifest, ManifestError
from dial.model.repository import ModelNotFound, ModelRepository


def test_manifest_records_what_serving_needs(tiny_manifest):
    m = tiny_manifest
    assert m.in_channels == m.n_bands + m.n_classes == 3 + 6
    assert m.click_encoding.radius_px == 5.0
    assert m.training["command"] == "test fixture"
    split = m.training["split"]
    assert split["train"] and split["val"] and not set(split["train"]) & set(split["val"])
    assert "miou_no_clicks" in m.training["validation"]
    assert len(m.weights_sha256) == 64


def test_onnx_and_torch_agree(tiny_repo):
    repo = ModelRepository(tiny_repo)
    net, manifest = repo.load_torch("tiny")
    onnx = OnnxPredictor(repo.onnx_path("tiny"), manifest, provider="cpu")
    torch_predictor = TorchPredictor(net, manifest)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (96, 160, 3), dtype=np.uint8)  # not the export's 64x64: dynamic H, W
    x = np.stack([network_input(image, [Click(5, 7, 2)], manifest)] * 2)  # and a dynamic batch of 2
    a, b = onnx.logits(x), torch_predictor.logits(x)
    assert a.shape == b.shape == (2, 6, 96, 160)
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


def test_tiled_prediction_blends_to_probabilities(tiny_repo):
    repo = ModelRepository(tiny_repo)
    manifest = repo.manifest("tiny")
    predictor = OnnxPredictor(repo.onnx_path("tiny"), manifest, provider="cpu")
    image = np.random.default_rng(1).integers(0, 255, (300, 250, 3), dtype=np.uint8)
    probs = predict_probabilities(predictor, image, [Click(150, 120, 1)])
    assert probs.shape == (6, 300, 250)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    # A single tile covering everything gives the same map up to blending near tile seams.
    whole = predict_probabilities(predictor, image, [Click(150, 120, 1)], tile_px=320, overlap_px=0)
    assert (whole.argmax(0) == probs.argmax(0)).mean() > 0.9


def test_resolve_versions_and_missing_models(tiny_repo):
    repo = ModelRepository(tiny_repo)
    assert repo.names() == ["tiny"]
    assert repo.resolve("tiny") == ("tiny", "1")
    with pytest.raises(ModelNotFound, match="no version '7'"):
        repo.resolve("tiny:7")
    with pytest.raises(ModelNotFound, match="not in the repository"):
        repo.resolve("nope")


def _copy(tiny_repo, tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(tiny_repo, root)
    return root, root / "tiny" / "1"


def test_inconsistent_manifest_fails_with_a_clear_message(tiny_repo, tmp_path):
    root, version_dir = _copy(tiny_repo, tmp_path)
    data = json.loads((version_dir / "manifest.json").read_text())
    data["in_channels"] = 12
    (version_dir / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"in_channels 12 != bands \(3\) \+ classes \(6\)"):
        ModelRepository(root).manifest("tiny")


def test_corrupt_weights_are_detected(tiny_repo, tmp_path):
    root, version_dir = _copy(tiny_repo, tmp_path)
    weights = version_dir / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-100] + b"x" * 100)
    with pytest.raises(ManifestError, match="checksum"):
        ModelRepository(root).load_torch("tiny")


def test_manifest_that_does_not_fit_the_weights(tiny_repo, tmp_path):
    root, version_dir = _copy(tiny_repo, tmp_path)
    data = json.loads((version_dir / "manifest.json").read_text())
    data["classes"] = data["classes"][:4]
    data.pop("in_channels")
    (version_dir / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="do not fit"):
        ModelRepository(root).load_torch("tiny")


def test_onnx_export_is_rebuilt_when_missing_and_goes_to_cache_if_read_only(tiny_repo, tmp_path):
    root, version_dir = _copy(tiny_repo, tmp_path)
    (version_dir / "model.onnx").unlink()
    version_dir.chmod(0o555)
    try:
        cache = tmp_path / "cache"
        path = ModelRepository(root, cache_dir=cache).onnx_path("tiny")
        if (version_dir / "model.onnx").exists():  # running as a user that ignores permissions
            assert path == version_dir / "model.onnx"
        else:
            assert path.is_relative_to(cache) and path.exists()
    finally:
        version_dir.chmod(0o755)


def test_versions_are_immutable(tiny_repo, tmp_path):
    root, _ = _copy(tiny_repo, tmp_path)
    repo = ModelRepository(root)
    net, manifest = repo.load_torch("tiny")
    with pytest.raises(FileExistsError):
        repo.save(net, manifest)
    m2 = Manifest.from_dict({**manifest.to_dict(), "version": repo.next_version("tiny")})
    saved = repo.save(net, m2, export=False)
    assert repo.resolve("tiny") == ("tiny", "2") and saved.weights_sha256 == manifest.weights_sha256


def test_provider_choice_prefers_gpu_and_honours_force():
    assert choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    everything = ["CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(everything) == ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                            "CPUExecutionProvider"]
    assert choose_providers(everything, "cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="forced"):
        choose_providers(["CPUExecutionProvider"], "tensorrt")


def test_padding_to_network_stride():
    x = np.arange(2 * 50 * 70, dtype=np.float32).reshape(2, 50, 70)
    padded = pad_to_multiple(x)
    assert padded.shape == (2, 64, 96)
    np.testing.assert_array_equal(padded[:, :50, :70], x)
