"""``dial eval-al``: patches in a strategy's order, one click each, mIoU per patch."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dial.acquisition import get_strategy, rank_patches
from dial.evaluation import refiners
from dial.evaluation.active import ActiveConfig, run_active_learning


class TruthPainter:
    """A refiner that knows the truth: each click paints the true labels in a disc around it."""

    truths: list = []
    clicks: list = []

    def __init__(self, predictor, context=None):
        self.predictor = predictor

    def start(self, image):
        from dial.inference.tiling import predict_labels

        self.labels = predict_labels(self.predictor, image)
        self.truth = TruthPainter.truths.pop(0)
        return self.labels.copy()

    def add_click(self, click):
        TruthPainter.clicks.append(click)
        rows, cols = np.ogrid[: self.labels.shape[0], : self.labels.shape[1]]
        disc = ((rows - click.row) ** 2 + (cols - click.col) ** 2 <= 12 ** 2) & (self.truth != 255)
        self.labels[disc] = self.truth[disc]
        return self.labels.copy()


def test_clicks_follow_the_ranking_and_the_curve_is_the_dataset_miou(tiny_repo, synthetic_dataset, monkeypatch):
    from dial.acquisition import AcquisitionModel
    from dial.imagery.dataset import Dataset
    from dial.model.repository import ModelRepository

    dataset = Dataset.open(synthetic_dataset)
    samples = dataset.samples[:2]
    truths = [dataset.read(s)[1] for s in samples]
    monkeypatch.setitem(refiners.REFINERS, "painter", TruthPainter)
    TruthPainter.truths, TruthPainter.clicks = list(truths), []
    config = ActiveConfig(model="tiny", data=str(synthetic_dataset), repo=str(tiny_repo), strategies=("entropy",),
                          patches=3, patch_px=32, mode="painter", split="all", limit=2, recall_weight=0.7)
    report = run_active_learning(config)
    assert report["recall_weight"] == 0.7

    assert report["strategy"] == "entropy" and len(report["miou"]) == 4
    assert report["auc"] == pytest.approx(np.mean(report["miou"]))
    assert all(a <= b + 1e-12 for a, b in zip(report["miou"], report["miou"][1:]))
    assert report["miou"][-1] > report["miou"][0]
    assert report["click_cost"]["patches"] == 6 and report["seconds_rank"] > 0
    per_image = report["per_image_miou"]
    assert list(per_image) == [s.name for s in samples]
    assert all(len(curve) == report["patches_per_image"] + 1 for curve in per_image.values())
    assert all(0 <= curve[0] < curve[-1] <= 1 for curve in per_image.values())

    model = AcquisitionModel.from_repository(ModelRepository(tiny_repo), "tiny")
    strategy = get_strategy("entropy")
    clicks = iter(TruthPainter.clicks)
    for sample in samples:
        image, _ = dataset.read(sample)
        for patch in rank_patches(strategy, strategy.compute(model, image), patch_px=32, max_patches=3):
            click = next(clicks)
            r, c, h, w = patch.window
            assert r <= click.row < r + h and c <= click.col < c + w


def test_eval_al_command_compares_strategies_in_one_json_and_plot(tiny_repo, synthetic_dataset, tmp_path):
    from dial.cli import main

    out, plot = tmp_path / "al.json", tmp_path / "al.png"
    assert main(["eval-al", "--model", "tiny", "--data", str(synthetic_dataset), "--model-repo", str(tiny_repo),
                 "--strategy", "random,entropy,confidnet", "--patches", "2", "--patch-px", "64", "--split", "all",
                 "--limit", "1", "--json", str(out), "--plot", str(plot)]) == 0
    report = json.loads(out.read_text())
    assert set(report["strategies"]) == {"random", "entropy", "confidnet"}
    assert "train-confidnet" in report["strategies"]["confidnet"]["skipped"]
    for name in ("random", "entropy"):
        entry = report["strategies"][name]
        assert len(entry["miou"]) == 3 and entry["auc"] == pytest.approx(np.mean(entry["miou"]))
    assert plot.stat().st_size > 0
