"""``dial eval-al``: patches in a strategy's order, one click each, mIoU per patch."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from dial.acquisition import Strategy, get_strategy, rank_patches
from dial.evaluation import refiners
from dial.evaluation.active import ActiveConfig, run_active_learning


class TruthPainter:
    """A refiner that knows the truth: each click paints the true labels in a disc around it."""

    truths: list = []
    made: list = []  # every click, over all images

    def __init__(self, predictor, context=None):
        self.predictor = predictor

    def start(self, image):
        from dial.inference.tiling import predict_labels

        self.labels = predict_labels(self.predictor, image)
        self.truth = TruthPainter.truths.pop(0)
        self.clicks = []
        return self.labels.copy()

    def acquisition_model(self, base):
        return replace(base)  # a distinct object, so a test can tell it from the click-free model

    def add_click(self, click):
        TruthPainter.made.append(click)
        self.clicks.append(click)
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
    TruthPainter.truths, TruthPainter.made = list(truths), []
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
    clicks = iter(TruthPainter.made)
    for sample in samples:
        image, _ = dataset.read(sample)
        for patch in rank_patches(strategy, strategy.compute(model, image), patch_px=32, max_patches=3):
            click = next(clicks)
            r, c, h, w = patch.window
            assert r <= click.row < r + h and c <= click.col < c + w


def test_adapt_seed_seeds_the_adaptation_and_not_the_patch_order(tiny_repo, synthetic_dataset, monkeypatch):
    from dial.imagery.dataset import Dataset

    dataset = Dataset.open(synthetic_dataset)
    contexts = []

    def recording_painter(predictor, context):
        contexts.append(context)
        return TruthPainter(predictor, context)

    monkeypatch.setitem(refiners.REFINERS, "painter", recording_painter)
    config = ActiveConfig(model="tiny", data=str(synthetic_dataset), repo=str(tiny_repo), strategies=("random",),
                          patches=3, patch_px=32, mode="painter", split="all", limit=1, seed=5)
    orders = {}
    for adapt_seed in (0, 7):
        TruthPainter.truths = [dataset.read(dataset.samples[0])[1]]
        report = run_active_learning(replace(config, adapt_seed=adapt_seed))
        assert report["adapt_seed"] == adapt_seed and report["seed"] == 5
        orders[adapt_seed] = report["per_image_patches"]
    assert [c.disca.seed for c in contexts] == [0, 7]
    assert orders[0] == orders[7], "the adaptation's seed must not move random's patch order"


class FarFromLastClick(Strategy):
    """Scores by column with no click; after clicks, by distance from the latest one (farthest first)."""

    name = "far"
    calls: list = []

    def compute(self, model, image, clicks=()):
        from dial.acquisition import UncertaintyResult
        from dial.inference.tiling import predict_labels

        FarFromLastClick.calls.append((model, list(clicks)))
        rows, cols = np.indices(image.shape[:2], dtype=np.float32)
        if clicks:
            scores = np.hypot(rows - clicks[-1].row, cols - clicks[-1].col)
        else:
            scores = cols
        return UncertaintyResult(scores.astype(np.float32), predict_labels(model.predictor, image))


def test_rescore_ranks_again_after_every_click_with_the_refiners_model_and_clicks(
        tiny_repo, synthetic_dataset, monkeypatch):
    from dial.acquisition import STRATEGIES
    from dial.imagery.dataset import Dataset

    dataset = Dataset.open(synthetic_dataset)
    sample = dataset.samples[0]
    monkeypatch.setitem(refiners.REFINERS, "painter", TruthPainter)
    monkeypatch.setitem(STRATEGIES, "far", FarFromLastClick)
    TruthPainter.truths, TruthPainter.made, FarFromLastClick.calls = [dataset.read(sample)[1]], [], []
    config = ActiveConfig(model="tiny", data=str(synthetic_dataset), repo=str(tiny_repo), strategies=("far",),
                          patches=4, patch_px=32, mode="painter", split="all", limit=1, rescore=True)
    report = run_active_learning(config)

    assert report["rescore"] is True and len(report["miou"]) == 5
    cells = [(r // 32, c // 32) for r, c, _, _ in report["per_image_patches"][sample.name]]
    assert cells[0] == (0, 3), "with no click, the rightmost column ranks first, top row on ties"
    assert cells[1] == (3, 0), "after a click in the top-right patch, the farthest patch is bottom-left"
    assert len(cells) == 4 and len(set(cells)) == 4, "an annotated patch is never ranked again"
    # One ranking before the first click, then one after each patch but the last,
    # each with the refiner's model and every click so far.
    calls = FarFromLastClick.calls
    assert len(calls) == 4 and calls[0][1] == [] and len(calls[1][1]) == 1
    assert all(clicks == TruthPainter.made[: len(clicks)] for _, clicks in calls)
    assert all(model is not calls[0][0] for model, _ in calls[1:])

    TruthPainter.truths, TruthPainter.made, FarFromLastClick.calls = [dataset.read(sample)[1]], [], []
    static = run_active_learning(replace(config, rescore=False))
    assert static["rescore"] is False and len(FarFromLastClick.calls) == 1
    assert [(r // 32, c // 32) for r, c, _, _ in static["per_image_patches"][sample.name]] == [
        (0, 3), (1, 3), (2, 3), (3, 3)]


def test_eval_al_command_compares_strategies_in_one_json_and_plot(tiny_repo, synthetic_dataset, tmp_path):
    from dial_services.cli import main

    out, plot = tmp_path / "al.json", tmp_path / "al.png"
    assert main(["eval-al", "--model", "tiny", "--data", str(synthetic_dataset), "--model-repo", str(tiny_repo),
                 "--strategy", "random,entropy,confidnet", "--patches", "2", "--patch-px", "64", "--split", "all",
                 "--limit", "1", "--json", str(out), "--plot", str(plot)]) == 0
    report = json.loads(out.read_text())
    assert set(report["strategies"]) == {"random", "entropy", "confidnet"}
    assert report["mode"] == "ac" and report["seed"] == 0
    assert all(report[key] is None for key in ("variant", "learning_rate", "recall_weight", "adapt_seed")), \
        "AC never adapts, so no adaptation setting is quoted"
    assert "train-confidnet" in report["strategies"]["confidnet"]["skipped"]
    for name in ("random", "entropy"):
        entry = report["strategies"][name]
        assert len(entry["miou"]) == 3 and entry["auc"] == pytest.approx(np.mean(entry["miou"]))
    assert plot.stat().st_size > 0
