"""The simulated-annotator evaluation, end to end on the tiny synthetic model."""
import json

import pytest

from dial.evaluation.interactive import EvalConfig, run_evaluation


def test_eval_report_has_the_promised_fields(tiny_repo, synthetic_dataset):
    report = run_evaluation(EvalConfig(model="tiny", data=str(synthetic_dataset), repo=str(tiny_repo), clicks=3))
    assert report["split"].startswith("val")
    assert report["images"] == json.loads((tiny_repo / "tiny/1/manifest.json").read_text())["training"]["split"]["val"]
    assert len(report["miou"]) == 4 and all(0 <= v <= 1 for v in report["miou"])
    assert set(report["per_class_iou"]) == {"0", "3"}
    assert report["clicks_made"] > 0 and report["seconds_per_click"] > 0
    assert isinstance(report["pixels_corrected_per_click"], float)
    assert "noc" not in report  # NoC is reported for binary datasets only


def test_binary_eval_reports_noc(writable_repo, synthetic_dataset, tmp_path):
    from dial.training.trainer import TrainConfig, train

    train(TrainConfig(data=str(synthetic_dataset), name="tinybin", repo=str(writable_repo), binary="building",
                      crop_px=64, batch_size=2, iterations=2, workdir=str(tmp_path), tile_px=128,
                      overlap_px=32), command="test")
    report = run_evaluation(EvalConfig(model="tinybin", data=str(synthetic_dataset), repo=str(writable_repo),
                                       binary="building", clicks=2, split="all"))
    assert report["class_names"] == ["not building", "building"]
    assert {"noc@85", "noc@90", "never_reached@85", "never_reached@90"} <= set(report["noc"])
    assert len(report["iou"]) == 3
    assert report["split"].startswith("all (includes")


def test_class_mismatch_is_a_clear_error(tiny_repo, synthetic_dataset):
    from dial.model.manifest import ManifestError

    with pytest.raises(ManifestError, match="--binary CLASS"):
        run_evaluation(EvalConfig(model="tiny", data=str(synthetic_dataset), repo=str(tiny_repo),
                                  binary="building", clicks=1))


def test_dial_eval_cli_writes_json_and_plot(tiny_repo, synthetic_dataset, tmp_path):
    from dial_services.cli import main

    out, plot = tmp_path / "r.json", tmp_path / "r.png"
    assert main(["eval", "--model", "tiny:1", "--data", str(synthetic_dataset), "--model-repo", str(tiny_repo),
                 "--clicks", "2", "--mode", "ac", "--json", str(out), "--plot", str(plot)]) == 0
    report = json.loads(out.read_text())
    assert report["model"] == "tiny:1" and len(report["miou"]) == 3
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_clicks_help_on_a_model_that_learned_them(tiny_repo, synthetic_dataset):
    """A click's cone enters the network; with the same image, many clicks change the map."""
    from dial.clicks import Click
    from dial.evaluation.interactive import load_predictor
    from dial.inference.tiling import predict_labels
    from dial.imagery.dataset import Dataset
    from dial.model.repository import ModelRepository

    predictor = load_predictor(ModelRepository(tiny_repo), "tiny", "onnx")
    sample, image, mask = next(iter(Dataset.open(synthetic_dataset)))
    before = predict_labels(predictor, image)
    clicks = [Click(r, c, 5) for r in range(8, 128, 16) for c in range(8, 128, 16)]
    after = predict_labels(predictor, image, clicks)
    assert (after != before).any()


def test_a_folder_sharing_the_training_name_without_its_val_images_says_use_split_all(
        tiny_repo, synthetic_dataset, tmp_path, capsys):
    """Other images under the training dataset's name have no validation split to take."""
    import shutil

    from dial_services.cli import main

    val = json.loads((tiny_repo / "tiny/1/manifest.json").read_text())["training"]["split"]["val"]
    other = tmp_path / synthetic_dataset.name
    for sub in ("images", "masks"):
        (other / sub).mkdir(parents=True)
        for path in (synthetic_dataset / sub).iterdir():
            if path.stem not in val:
                shutil.copy(path, other / sub / path.name)
    for path in synthetic_dataset.iterdir():
        if path.is_file():
            shutil.copy(path, other / path.name)
    out = tmp_path / "r.json"
    # In-process, as the console script runs it: an uncaught exception here would be the traceback.
    base = ["eval", "--model", "tiny:1", "--data", str(other), "--model-repo", str(tiny_repo), "--clicks", "1",
            "--json", str(out)]
    assert main(base) == 2
    assert "--split all" in capsys.readouterr().err
    assert not out.exists()
    assert main(base + ["--split", "all"]) == 0
    assert json.loads(out.read_text())["split"].startswith("all")
