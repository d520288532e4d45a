"""Acquisition functions, click costs and patch ranking as pure functions over arrays."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support.acquisition_stubs import HARD, SIZE, StubConfidence, StubNetwork, StubRegressor, hard_image, stub_manifest
from dial.acquisition import STRATEGIES, AcquisitionModel, click_cost, get_strategy, patch_grid, rank_patches
from dial.acquisition.cost import click_cost_map
from dial.acquisition.model import SIDE_MANIFEST, HeadMissing
from dial.acquisition.strategies import UncertaintyResult
from dial.imagery.georef import Window
from dial.inference.classwise import entropy_from_logits, logits_of, margin_from_logits

MODEL_STRATEGIES = [name for name in STRATEGIES if name != "random"]


@pytest.fixture(scope="module")
def stub_model():
    model = AcquisitionModel.from_network(StubNetwork(), stub_manifest())
    model.set_head("confidnet", StubConfidence())
    model.set_head("metaseg", StubRegressor())
    return model


def test_every_documented_strategy_is_registered():
    assert set(STRATEGIES) == {"random", "entropy", "margin", "mc_dropout", "odin", "confidnet", "metaseg", "metabox"}
    with pytest.raises(ValueError, match="unknown strategy"):
        get_strategy("bald")


@pytest.mark.parametrize("name", MODEL_STRATEGIES)
def test_top_patch_is_the_window_where_the_model_is_unsure(stub_model, name):
    strategy = get_strategy(name)
    result = strategy.compute(stub_model, hard_image())
    assert result.scores.shape == (SIZE, SIZE) and result.scores.dtype == np.float32
    assert np.isfinite(result.scores).all()
    ranked = rank_patches(strategy, result, patch_px=64, max_patches=2)
    assert ranked[0].window == HARD
    assert ranked[0].score > ranked[1].score


@pytest.mark.parametrize("name", MODEL_STRATEGIES)
def test_the_hard_window_moves_with_the_image(stub_model, name):
    window = (192, 0, 64, 64)
    strategy = get_strategy(name)
    ranked = rank_patches(strategy, strategy.compute(stub_model, hard_image(window)), patch_px=64, max_patches=1)
    assert ranked[0].window == window


def test_random_order_depends_on_the_seed_only(stub_model):
    image = hard_image()

    def order(seed):
        strategy = get_strategy("random", seed=seed)
        return [p.window for p in rank_patches(strategy, strategy.compute(stub_model, image), patch_px=64)]

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert sorted(order(1)) == sorted(patch_grid(SIZE, SIZE, 64))


def test_entropy_and_margin_are_normalised():
    certain = np.zeros((4, 2, 2), np.float32)
    certain[0] = 1
    uniform = np.full((4, 2, 2), 0.25, np.float32)
    for probs, expected in ((certain, 0.0), (uniform, 1.0)):
        logits = logits_of(probs)
        assert np.allclose(entropy_from_logits(logits)[0], expected, atol=1e-6)
        assert np.allclose(margin_from_logits(logits)[0], expected, atol=1e-6)


def test_mc_dropout_reusing_the_encoder_gives_the_same_map(stub_model):
    image = hard_image()
    shared = get_strategy("mc_dropout", seed=3).compute(stub_model, image).scores
    repeated = get_strategy("mc_dropout", seed=3, reuse_encoder=False).compute(stub_model, image).scores
    assert np.allclose(shared, repeated, atol=1e-6)


def test_mc_dropout_variance_is_the_variance_over_its_passes(stub_model):
    import torch

    strategy = get_strategy("mc_dropout", passes=4, p=0.5, seed=1)
    network = stub_model.torch_network()
    inputs = torch.zeros(2, 5, 32, 32)
    inputs[:, 0, 8:24, 8:24] = 1.0
    outputs = strategy.tile_outputs(stub_model, inputs)
    with torch.inference_mode():
        features = network.encoder(inputs)
        passes = torch.stack([torch.softmax(network.segmentation_head(network.decoder(
            [features[0]] + [f * m for f, m in zip(features[1:], masks)])), dim=1)
            for masks in strategy._masks_for(features)])
    assert torch.allclose(outputs[:, :1], passes.var(dim=0, unbiased=False).mean(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(outputs[:, 1:], passes.mean(dim=0), atol=1e-6)
    # Masks are drawn once: a second batch of tiles sees the same sub-networks.
    assert torch.equal(strategy.tile_outputs(stub_model, inputs), outputs)
    with pytest.raises(ValueError, match="passes"):
        get_strategy("mc_dropout", passes=1)


def test_learned_strategies_need_their_head():
    bare = AcquisitionModel.from_network(StubNetwork(), stub_manifest())
    for name in ("confidnet", "metaseg", "metabox"):
        with pytest.raises(HeadMissing, match=f"train-{'confidnet' if name == 'confidnet' else 'metaseg'}"):
            get_strategy(name).compute(bare, hard_image())


# -- click costs -----------------------------------------------------------

def test_click_cost_of_hand_made_polygons():
    uniform = np.zeros((64, 64), np.uint8)
    assert click_cost(uniform).total == 1

    square = uniform.copy()
    square[10:30, 20:40] = 1
    cost = click_cost(square)
    assert (cost.polygon, cost.intersection, cost.classes) == (4, 0, 2)

    triangle = uniform.copy()
    for r in range(10, 50):
        triangle[r, 10: r] = 2
    assert click_cost(triangle).polygon == 3

    halves = uniform.copy()
    halves[32:] = 1
    cost = click_cost(halves)
    assert (cost.polygon, cost.intersection, cost.classes) == (0, 4, 2)

    corner = uniform.copy()
    corner[:20, :20] = 1
    cost = click_cost(corner)
    assert (cost.polygon, cost.intersection, cost.classes) == (2, 4, 2)


def test_click_cost_skips_unannotated_pixels_and_holes():
    ring = np.zeros((64, 64), np.uint8)
    ring[10:50, 10:50] = 1
    ring[20:30, 20:30] = 0
    assert click_cost(ring).polygon == 8  # two squares, the hole not traced twice
    island = ring.copy()
    island[23:27, 23:27] = 1  # a segment in the hole of a segment of its own class
    cost = click_cost(island)
    assert (cost.polygon, cost.classes) == (12, 4)
    ignored = np.full((64, 64), 255, np.uint8)
    ignored[10:30, 20:40] = 1
    assert click_cost(ignored).total == 5


def test_click_cost_map_marks_polygon_vertices():
    square = np.zeros((64, 64), np.uint8)
    square[10:30, 20:40] = 1
    marks = click_cost_map(square)
    assert marks.sum() == 4
    rows, cols = np.nonzero(marks)
    assert set(rows) <= {9, 10, 29, 30} and set(cols) <= {19, 20, 39, 40}


# -- ranking ---------------------------------------------------------------

class _MapStrategy(get_strategy("entropy").__class__):
    name = "fixed"


def _result(scores, labels=None):
    labels = np.zeros(scores.shape, np.uint8) if labels is None else labels
    return UncertaintyResult(scores.astype(np.float32), labels)


def test_overlapping_candidates_never_both_chosen():
    scores = np.zeros((256, 256), np.float32)
    scores[100:140, 100:140] = 1.0
    ranked = rank_patches(_MapStrategy(), _result(scores), patch_px=64, stride_px=16)
    assert len(ranked) >= 4
    for i, a in enumerate(ranked):
        for b in ranked[i + 1:]:
            assert not (a.window[0] < b.window[0] + b.window[2] and b.window[0] < a.window[0] + a.window[2]
                        and a.window[1] < b.window[1] + b.window[3] and b.window[1] < a.window[1] + a.window[3])
    r, c, h, w = ranked[0].window
    assert r <= 100 and c <= 100 and r + h >= 140 and c + w >= 140


def test_annotated_patches_are_excluded():
    scores = np.zeros((128, 128), np.float32)
    scores[:64, :64] = 1.0
    scores[64:, 64:] = 0.5
    ranked = rank_patches(_MapStrategy(), _result(scores), patch_px=64, exclude=[(10, 10, 5, 5)])
    assert [p.window for p in ranked][0] == (64, 64, 64, 64)
    assert (0, 0, 64, 64) not in [p.window for p in ranked]
    assert [p.rank for p in ranked] == [1, 2, 3]


def test_no_reduction_puts_a_border_sliver_first():
    # 100 x 157 is no multiple of the 64 px patch; a noisy 3 px strip along the right border is what made
    # a cut 64 x 29 border window win on mean before.
    scores = np.full((100, 157), 0.1, np.float32)
    scores[:, 154:] = 1.0
    scores[40:60, 20:40] = 0.6  # a real uncertain region, inside
    for reduction in ("mean", "sum"):
        ranked = rank_patches(_MapStrategy(), _result(scores), patch_px=64, reduction=reduction)
        assert {(p.window.height, p.window.width) for p in ranked} == {(64, 64)}, reduction
        assert ranked[0].window.col_off == 0, (reduction, ranked[0].window)  # the inside region wins
    assert {p.score for p in rank_patches(_MapStrategy(), _result(np.ones((100, 100), np.float32)),
                                          patch_px=64)} == {1.0}


def test_cost_weighting_prefers_the_cheaper_of_two_equal_patches():
    scores = np.ones((64, 128), np.float32)
    labels = np.zeros((64, 128), np.uint8)
    labels[10:20, 10:20] = 1
    labels[30:40, 30:40] = 2
    plain = rank_patches(_MapStrategy(), _result(scores, labels), patch_px=64)
    weighted = rank_patches(_MapStrategy(), _result(scores, labels), patch_px=64, cost_weighting=True)
    assert plain[0].window == (0, 0, 64, 64)
    assert weighted[0].window == (0, 64, 64, 64)
    assert weighted[1].estimated_click_cost == 11.0 and weighted[0].estimated_click_cost == 1.0


def test_hints_are_top_quantile_pixels_inside_the_patch():
    scores = np.zeros((128, 128), np.float32)
    scores[70:74, 80:84] = 1.0
    scores[100, 120] = 0.9
    top = rank_patches(_MapStrategy(), _result(scores), patch_px=64, hint_quantile=0.99)[0]
    assert top.window == (64, 64, 64, 64)
    assert top.hints[0] in {(r, c) for r in range(70, 74) for c in range(80, 84)}
    assert (100, 120) in top.hints
    assert all(64 <= r < 128 and 64 <= c < 128 for r, c in top.hints)


def test_patch_grid_covers_the_image_with_full_size_patches():
    windows = patch_grid(100, 130, 64)
    covered = np.zeros((100, 130), int)
    for r, c, h, w in windows:
        covered[r: r + h, c: c + w] += 1
    assert (covered >= 1).all()
    # No border sliver: the last row and column end at the border, overlapping their neighbours.
    assert {(h, w) for _, _, h, w in windows} == {(64, 64)}
    assert sorted({r for r, *_ in windows}) == [0, 36] and sorted({c for _, c, *_ in windows}) == [0, 64, 66]
    assert patch_grid(40, 50, 64) == [Window(0, 0, 40, 50)]  # an image smaller than a patch is one patch


# -- learned heads on the tiny trained model -------------------------------

def test_heads_train_store_and_reload_with_the_tiny_model(tiny_repo, synthetic_dataset, tmp_path):
    import shutil

    from dial.acquisition.confidnet import ConfidNetConfig, save_head, train_head
    from dial.acquisition.metaseg import collect, save_regressors, train_regressors
    from dial.imagery.dataset import Dataset
    from dial.inference.tiling import predict_probabilities
    from dial.model.repository import ModelRepository

    repo_root = tmp_path / "models"
    shutil.copytree(tiny_repo, repo_root)
    repo = ModelRepository(repo_root)
    manifest_before = (repo.path("tiny") / "manifest.json").read_text()
    model = AcquisitionModel.from_repository(repo, "tiny", runtime="torch")
    dataset = Dataset.open(synthetic_dataset)
    dataset = dataset.subset([s.name for s in dataset.samples[:4]])

    head, summary = train_head(model.network, model.manifest, dataset,
                               ConfidNetConfig(iterations=3, batch_size=2, crop_px=64))
    save_head(head, repo.path("tiny"), summary)
    data = collect(lambda image: predict_probabilities(model.predictor, image), dataset, model.manifest.n_classes)
    regressors, summary = train_regressors(data)
    assert "gbr_holdout_r2" in summary and "linear_holdout_r2" in summary
    save_regressors(regressors, repo.path("tiny"), summary)

    side = json.loads((repo.path("tiny") / SIDE_MANIFEST).read_text())
    assert set(side) == {"confidnet", "metaseg"}
    assert (repo.path("tiny") / "manifest.json").read_text() == manifest_before
    ModelRepository(repo_root).load_torch("tiny")  # the main manifest's checksum still holds

    fresh = AcquisitionModel.from_repository(repo, "tiny", runtime="torch")
    image, _ = dataset.read(dataset.samples[0])
    for name in STRATEGIES:
        result = get_strategy(name).compute(fresh, image)
        assert result.scores.shape == image.shape[:2] and np.isfinite(result.scores).all(), name
        assert result.labels.max() < fresh.manifest.n_classes
