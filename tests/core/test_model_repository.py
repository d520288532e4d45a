import json
import shutil

import numpy as np
import pytest

from dial.clicks import Click
from dial.errors import AlreadyExists
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
    with pytest.raises(AlreadyExists, match="tiny:1 already exists"):
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


# -- names, versions and what the scan skips ----------------------------------

@pytest.mark.parametrize("version", ["²", "٣", "３", "1" * 500, "..", "-1", "+1", "01", "1.0", " 1", "1\n", ""])
def test_versions_are_short_ascii_numbers(version):
    from dial.model.repository import check_version

    with pytest.raises(ValueError, match="ASCII digits") as raised:
        check_version(version)
    assert len(str(raised.value)) < 200  # a 500-digit version is not echoed whole


@pytest.mark.parametrize("name", ["../rasters/evil", "/srv/models/tiny", "tiny\n", "Tiny", "", ".hidden", "a/b",
                                  "x" * 64, "tiny\x00"])
def test_names_that_are_not_plain_folder_names_are_refused(name):
    from dial.model.repository import check_name

    with pytest.raises(ValueError, match="model name"):
        check_name(name)


def test_good_names_and_versions_pass():
    from dial.model.repository import check_name, check_version

    assert check_name("linknet-resnet18.v2_a") == "linknet-resnet18.v2_a"
    assert [check_version(v) for v in ("0", "1", "42", "999999999")] == ["0", "1", "42", "999999999"]


def test_the_scan_skips_what_it_cannot_parse_and_keeps_the_rest(tiny_repo, tmp_path, caplog):
    root, version_dir = _copy(tiny_repo, tmp_path)
    for bad in ("²", "latest", "٣"):
        shutil.copytree(version_dir, root / "tiny" / bad)
    shutil.copytree(version_dir, root / "tiny" / "7")
    (root / "tiny" / "7" / "manifest.json").write_text("{ not json")
    shutil.copytree(version_dir, root / "UPPER")
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "manifest.json").write_bytes(b"\xff\xfe\x00garbage")
    repo = ModelRepository(root)
    with caplog.at_level("WARNING", logger="dial.model.repository"):
        assert repo.names() == ["tiny"]
        assert repo.versions("tiny") == ["1"]
        assert repo.resolve("tiny") == ("tiny", "1")
    skipped = caplog.text
    assert "'²'" in skipped and "'latest'" in skipped and "tiny:7" in skipped and "broken:1" in skipped
    assert str(tmp_path) not in skipped
    # A pinned request for the broken version says what is wrong with it, with no server path.
    with pytest.raises(ManifestError, match="not valid JSON") as raised:
        repo.manifest("tiny:7")
    assert str(tmp_path) not in str(raised.value)
    # Its number is taken all the same.
    assert repo.next_version("tiny") == "8"


def test_the_scan_logs_each_problem_once(tiny_repo, tmp_path, caplog):
    root, version_dir = _copy(tiny_repo, tmp_path)
    shutil.copytree(version_dir, root / "tiny" / "²")
    repo = ModelRepository(root)
    with caplog.at_level("WARNING", logger="dial.model.repository"):
        for _ in range(5):
            repo.resolve("tiny")
    assert caplog.text.count("skipping") == 1


def _plant(root, version_dir, name, **changes):
    planted = root / name / "1"
    shutil.copytree(version_dir, planted)
    data = json.loads((planted / "manifest.json").read_text())
    data.update(name=name, **changes)
    (planted / "manifest.json").write_text(json.dumps(data))
    return planted


def _snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_manifest_files_stay_inside_their_version_folder(tiny_repo, tmp_path):
    root, version_dir = _copy(tiny_repo, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.onnx").write_bytes(b"precious")
    shutil.copy(version_dir / "weights.pt", outside / "weights.pt")
    _plant(root, version_dir, "abs-onnx", onnx_file=str(outside / "victim.onnx"))
    _plant(root, version_dir, "dotdot-onnx", onnx_file="../../../outside/victim.onnx")
    _plant(root, version_dir, "abs-weights", weights_file=str(outside / "weights.pt"))
    _plant(root, version_dir, "dotdot-weights", weights_file="../../../outside/weights.pt")
    linked = _plant(root, version_dir, "linked-weights")
    (linked / "weights.pt").unlink()
    (linked / "weights.pt").symlink_to(outside / "weights.pt")
    linked_manifest = _plant(root, version_dir, "linked-manifest")
    (outside / "manifest.json").write_text((linked_manifest / "manifest.json").read_text())
    (linked_manifest / "manifest.json").unlink()
    (linked_manifest / "manifest.json").symlink_to(outside / "manifest.json")
    before = _snapshot(outside)
    repo = ModelRepository(root, cache_dir=tmp_path / "cache")
    assert repo.names() == ["tiny"]
    for name in ("abs-onnx", "dotdot-onnx", "abs-weights", "dotdot-weights", "linked-weights", "linked-manifest"):
        for call in (repo.manifest, repo.load_torch, repo.onnx_path):
            with pytest.raises(ManifestError) as raised:
                call(f"{name}:1")
            assert str(tmp_path) not in str(raised.value), str(raised.value)
    assert _snapshot(outside) == before


def test_an_onnx_export_replaces_links_instead_of_writing_through_them(tiny_repo, tmp_path):
    root, version_dir = _copy(tiny_repo, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.onnx").write_bytes(b"precious")
    (outside / "victim.sha256").write_bytes(b"also precious")
    (version_dir / "model.onnx").unlink()
    (version_dir / "model.onnx").symlink_to(outside / "victim.onnx")
    (version_dir / "model.onnx.sha256").unlink()
    (version_dir / "model.onnx.sha256").symlink_to(outside / "victim.sha256")
    before = _snapshot(outside)
    path = ModelRepository(root).onnx_path("tiny")
    assert path == version_dir / "model.onnx" and not path.is_symlink() and path.stat().st_size > 1000
    assert not (version_dir / "model.onnx.sha256").is_symlink()
    assert _snapshot(outside) == before


def test_the_onnx_cache_refuses_folders_that_link_elsewhere(tiny_repo, tmp_path, monkeypatch):
    root, version_dir = _copy(tiny_repo, tmp_path)
    (version_dir / "model.onnx").unlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tiny").symlink_to(outside)
    repo = ModelRepository(root, cache_dir=cache)
    # The repository folder refuses writes (as a read-only mount would), so only the cache is left.
    real_export = __import__("dial.model.repository", fromlist=["export_onnx"]).export_onnx

    def export(model, channels, path):
        if path.parent == version_dir:
            raise PermissionError(13, "read-only")
        return real_export(model, channels, path)

    monkeypatch.setattr("dial.model.repository.export_onnx", export)
    with pytest.raises(ManifestError, match="cannot write the ONNX export") as raised:
        repo.onnx_path("tiny")
    assert str(tmp_path) not in str(raised.value)
    assert list(outside.iterdir()) == []


def test_exports_are_not_latest_until_promoted(tiny_repo, tmp_path):
    root, _ = _copy(tiny_repo, tmp_path)
    repo = ModelRepository(root)
    net, manifest = repo.load_torch("tiny")
    repo.save(net, Manifest.from_dict({**manifest.to_dict(), "version": "2"}), export=False,
              exported_by={"caller": "alice", "session": "sessions/x"})
    assert repo.versions("tiny") == ["1", "2"] and repo.is_exported("tiny", "2")
    assert repo.resolve("tiny") == ("tiny", "1")
    assert repo.resolve("tiny:2") == ("tiny", "2")
    repo.promote("tiny:2")
    assert repo.resolve("tiny") == ("tiny", "2") and not repo.is_exported("tiny", "2")
    assert json.loads((root / "tiny" / "2" / "promoted.json").read_text())["caller"] == "alice"
    # A name that holds only exports has no latest, and says how to reach them.
    repo.save(net, Manifest.from_dict({**manifest.to_dict(), "name": "mine", "version": "1"}), export=False,
              exported_by={"caller": "alice", "session": "sessions/x"})
    with pytest.raises(ModelNotFound, match="mine:1"):
        repo.resolve("mine")


def test_a_version_folder_without_a_manifest_is_unusable_but_keeps_its_number(tiny_repo, tmp_path):
    root, _ = _copy(tiny_repo, tmp_path)
    (root / "tiny" / "4").mkdir()
    repo = ModelRepository(root)
    assert repo.versions("tiny") == ["1"] and repo.resolve("tiny") == ("tiny", "1")
    with pytest.raises(ManifestError, match=r"model tiny:4: no readable manifest.json") as raised:
        repo.resolve("tiny:4")
    assert str(tmp_path) not in str(raised.value)
    assert repo.next_version("tiny") == "5"
