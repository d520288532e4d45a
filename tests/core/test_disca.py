"""DISCA in the core: the loss, click targets, crops, and what adaptation does to a map."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dial.adaptation import DiscaAdapter, DiscaSettings, click_targets, crop_windows, disca_loss
from dial.clicks import Click
from dial.evaluation.refiners import REFINERS, RefinerContext, wrong_region_px
from dial.imagery.legend import IGNORE_INDEX


def test_loss_on_hand_checkable_values():
    logits = torch.zeros(1, 2, 1, 2)  # softmax 0.5 / 0.5 everywhere
    targets = torch.tensor([[[0, IGNORE_INDEX]]])
    p0 = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.5]]]])
    # CE on the one clicked pixel is ln 2; |0.5 - p0| is (0.5, 0, 0.5, 0), mean 0.25.
    assert disca_loss(logits, targets, p0, recall_weight=2.0).item() == pytest.approx(math.log(2) + 0.5)
    assert disca_loss(logits, targets, p0, recall_weight=0.0).item() == pytest.approx(math.log(2))


def test_loss_without_clicked_pixels_is_the_recall_term_alone():
    logits = torch.zeros(1, 2, 1, 2, requires_grad=True)
    targets = torch.full((1, 1, 2), IGNORE_INDEX)
    p0 = torch.tensor([[[[1.0, 1.0]], [[0.0, 0.0]]]])
    loss = disca_loss(logits, targets, p0, recall_weight=1.0)
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_click_targets_are_discs_and_later_clicks_win():
    targets = click_targets([Click(2, 2, 1), Click(2, 3, 4)], (0, 0, 6, 6), radius_px=1)
    assert np.count_nonzero(targets == 4) == 5
    assert np.count_nonzero(targets == 1) == 3  # its disc minus the two pixels the later click took
    assert targets[0, 0] == IGNORE_INDEX
    # A click outside the window still reaches in; origin shifts coordinates.
    shifted = click_targets([Click(10, 10, 2)], (9, 9, 4, 4), radius_px=1)
    assert shifted[1, 1] == 2 and shifted[0, 1] == 2 and shifted[0, 0] == IGNORE_INDEX


def test_crop_windows_cover_recent_clicks_within_the_image():
    clicks = [Click(5, 5, 0), Click(300, 300, 1), Click(310, 290, 1), Click(590, 10, 0)]
    windows = crop_windows(clicks, (600, 400), crop_px=128, max_crops=2)
    assert len(windows) == 2
    for r, c, h, w in windows:
        assert (h, w) == (128, 128) and 0 <= r <= 600 - 128 and 0 <= c <= 400 - 128
    covered = lambda k: any(r <= k.row < r + h and c <= k.col < c + w for r, c, h, w in windows)  # noqa: E731
    assert covered(clicks[3]) and covered(clicks[2]) and covered(clicks[1])
    assert not covered(clicks[0])  # the oldest click lost its crop to the limit
    assert crop_windows([Click(3, 3, 0)], (40, 50), 256, 4) == [(0, 0, 40, 50)]
    every = crop_windows(clicks, (600, 400), crop_px=128)
    assert len(every) == 3 and every[:2] == windows  # newest first; clicks 1 and 2 share a crop
    assert any(r <= 5 < r + h and c <= 5 < c + w for r, c, h, w in every)


def test_settings_reject_fast_variant_with_click_inputs():
    with pytest.raises(ValueError, match="annotation_dropout"):
        DiscaSettings(variant="fast", annotation_dropout=0.5).validate()
    with pytest.raises(ValueError, match="crop_px"):
        DiscaSettings(crop_px=100).validate()


@pytest.fixture(scope="module")
def tiny_model(tiny_repo):
    from dial.model.repository import ModelRepository

    torch.manual_seed(0)
    return ModelRepository(tiny_repo).load_torch("tiny")


@pytest.fixture(scope="module")
def scene(tiny_model):
    _, manifest = tiny_model
    return np.random.default_rng(0).integers(0, 255, (64, 64, manifest.n_bands)).astype(manifest.input_dtype)


def _adapt(tiny_model, scene, recall_weight, variant="full", steps=12):
    model, manifest = tiny_model
    adapter = DiscaAdapter(model, manifest, DiscaSettings(variant=variant, steps=steps, learning_rate=3e-2,
                                                          recall_weight=recall_weight, crop_px=64))
    p0 = adapter.start(scene).argmax(axis=0)
    rare = int(np.bincount(p0.ravel(), minlength=manifest.n_classes).argmin())
    clicks = [Click(10, 10, rare), Click(50, 40, rare)]
    adapter.adapt(clicks)
    return adapter, p0, adapter.predict_labels([]), rare


def test_without_recall_the_map_collapses_and_with_recall_it_stays_near_p0(tiny_model, scene):
    _, p0, free, rare = _adapt(tiny_model, scene, recall_weight=0.0)
    assert np.mean(free != p0) > 0.5, "lambda = 0 should overfit the clicks and flip most of the map"
    _, p0, anchored, _ = _adapt(tiny_model, scene, recall_weight=20.0)
    assert np.mean(anchored != p0) < 0.25, "the L1 recall should keep the map close to p0"


def test_adaptation_fits_the_clicks_and_leaves_the_base_model_alone(tiny_model, scene):
    model, _ = tiny_model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapter, _, labels, rare = _adapt(tiny_model, scene, recall_weight=1.0)
    assert labels[10, 10] == rare and labels[50, 40] == rare
    assert adapter.adaptations == 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fast_variant_changes_only_the_decoder(tiny_model, scene):
    model, _ = tiny_model
    adapter, _, labels, rare = _adapt(tiny_model, scene, recall_weight=1.0, variant="fast")
    adapted = adapter.model.state_dict()
    base = model.state_dict()
    assert all(torch.equal(base[k], adapted[k]) for k in base if k.startswith("encoder."))
    assert any(not torch.equal(base[k], adapted[k]) for k in base if k.startswith("decoder."))
    assert labels[10, 10] == rare


def test_fast_variant_adapts_a_click_fusion_network_and_keeps_its_encoder(tiny_model, scene):
    from dial.model.network import ClickFusion

    model, manifest = tiny_model
    fused = ClickFusion(model, manifest.n_classes)
    adapter, _, labels, rare = _adapt((fused, manifest), scene, recall_weight=1.0, variant="fast")
    adapted, base = adapter.model.state_dict(), fused.state_dict()
    assert all(torch.equal(base[k], adapted[k]) for k in base if k.startswith("net.encoder."))
    assert any(not torch.equal(base[k], adapted[k]) for k in base if k.startswith("net.decoder."))
    assert labels[10, 10] == rare


@pytest.mark.parametrize("variant", ["full", "fast"])
def test_every_click_keeps_teaching_when_there_are_more_crops_than_a_step_takes(tiny_model, scene, variant):
    model, manifest = tiny_model
    # lr 2e-2: at 1e-2 one corner of the fast variant rose only 0.17 -> 0.21 on some CPUs (the tiny model
    # is trained per test session, so its weights differ with the machine's float arithmetic).
    adapter = DiscaAdapter(model, manifest, DiscaSettings(variant=variant, steps=40, learning_rate=2e-2,
                                                          recall_weight=0.3, crop_px=32, max_crops=2))
    p0 = adapter.start(scene).astype(np.float32)
    # One click per corner, each wanting another class than p0's: four crops of 32 px, two per step.
    corners = [(4, 4), (4, 59), (59, 4), (59, 59)]
    labels0 = p0.argmax(axis=0)
    clicks = [Click(r, c, int((labels0[r, c] + 1 + i) % manifest.n_classes)) for i, (r, c) in enumerate(corners)]
    assert len(crop_windows(clicks, scene.shape[:2], 32)) == 4
    adapter.adapt(clicks)
    p = adapter.predict_probabilities([])
    # Had only the two newest crops been trained on, the two oldest clicks' classes would have
    # fallen to about 0.02 here, as the newer clicks pulled the weights their way.
    for k in clicks:
        assert p[k.class_id, k.row, k.col] > p0[k.class_id, k.row, k.col] + 0.1, k


def test_state_round_trip_resumes_the_same_adaptation(tiny_model, scene):
    model, manifest = tiny_model
    adapter, _, labels, rare = _adapt(tiny_model, scene, recall_weight=1.0, steps=3)
    state = adapter.state_dict()
    clone = DiscaAdapter(model, manifest, adapter.settings)
    clone.start(scene, p0=adapter.p0.astype(np.float32))
    clone.load_state_dict(state)
    assert np.array_equal(clone.predict_labels([]), labels)
    clicks = [Click(10, 10, rare)]
    adapter.adapt(clicks, steps=2)
    clone.adapt(clicks, steps=2)
    assert clone.adaptations == adapter.adaptations == 2
    for a, b in zip(adapter.model.parameters(), clone.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_wrong_region_is_the_component_under_the_click():
    labels = np.zeros((10, 10), np.uint8)
    labels[2:4, 2:4] = 1
    assert wrong_region_px(labels, Click(2, 2, 0)) == 4
    assert wrong_region_px(labels, Click(8, 8, 1)) == 96
    assert wrong_region_px(labels, Click(8, 8, 0)) == 0


@pytest.mark.parametrize("mode", ["disca", "both"])
def test_evaluation_modes_report_like_ac(tiny_repo, synthetic_dataset, mode):
    from dial.evaluation.interactive import EvalConfig, run_evaluation

    disca = DiscaSettings(variant="fast", steps=2, crop_px=64)
    common = dict(model="tiny", data=str(synthetic_dataset), repo=str(tiny_repo), clicks=2, split="all",
                  limit=2, runtime="torch")
    ac = run_evaluation(EvalConfig(mode="ac", **common))
    report = run_evaluation(EvalConfig(mode=mode, disca=disca, min_region_px=1, **common))
    assert set(ac) <= set(report)
    assert report["clicks_made"] == ac["clicks_made"] == 4
    assert report["miou"][0] == pytest.approx(ac["miou"][0], abs=0.02)
    assert report["adaptation"]["variant"] == "fast"
    assert set(REFINERS) >= {"ac", "disca", "both"}


def test_sequential_learning_keeps_weights_across_images(tiny_repo, scene):
    from dial.model.repository import ModelRepository

    repo = ModelRepository(tiny_repo)
    settings = DiscaSettings(variant="fast", steps=3, crop_px=64, learning_rate=3e-2)
    for sequential, expect_same in ((False, True), (True, False)):
        refiner = REFINERS["disca"](None, RefinerContext(repo=repo, model="tiny", disca=settings,
                                                         sequential=sequential))
        first = refiner.start(scene)
        refiner.add_click(Click(5, 5, int((first[5, 5] + 1) % 6)))
        again = refiner.start(scene)
        assert np.array_equal(first, again) == expect_same


def test_disca_refiner_hands_strategies_its_adapted_model(tiny_repo, scene):
    from dial.acquisition import AcquisitionModel, get_strategy
    from dial.model.repository import ModelRepository

    repo = ModelRepository(tiny_repo)
    base = AcquisitionModel.from_repository(repo, "tiny", runtime="torch")
    settings = DiscaSettings(variant="fast", steps=3, crop_px=64, learning_rate=3e-2)
    refiner = REFINERS["disca"](None, RefinerContext(repo=repo, model="tiny", disca=settings))
    first = refiner.start(scene)
    entropy = get_strategy("entropy")
    before = entropy.compute(refiner.acquisition_model(base), scene).scores
    assert np.allclose(before, entropy.compute(base, scene).scores, atol=1e-4)
    labels = refiner.add_click(Click(5, 5, int((first[5, 5] + 1) % 6)))
    adapted = refiner.acquisition_model(base)
    assert adapted.network is refiner.adapter.model and adapted.manifest is base.manifest
    after = entropy.compute(adapted, scene, refiner.clicks)
    assert np.array_equal(after.labels, labels)
    assert not np.allclose(after.scores, before, atol=1e-3)
    assert REFINERS["ac"](base.predictor).acquisition_model(base) is base


def test_eval_command_offers_every_refiner_and_the_adaptation_flags():
    from dial_services.cli import build_parser

    args = build_parser().parse_args(["eval", "--model", "m", "--data", "d", "--json", "out.json", "--mode", "both",
                                      "--variant", "fast", "--sequential", "--learning-rate", "0.001"])
    assert (args.mode, args.variant, args.sequential, args.learning_rate) == ("both", "fast", True, 0.001)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--model", "m", "--data", "d", "--json", "o", "--mode", "nope"])


def test_unset_settings_take_the_models_tuned_values_then_dials(tiny_model):
    from dataclasses import replace

    from dial.adaptation.disca import DEFAULT_LEARNING_RATES, DEFAULT_RECALL_WEIGHT
    from dial.model.manifest import Manifest, ManifestError

    _, manifest = tiny_model
    plain = replace(manifest, adaptation={})
    full = DiscaSettings(variant="full").for_model(plain)
    assert full.learning_rate == DEFAULT_LEARNING_RATES["full"] and full.recall_weight == DEFAULT_RECALL_WEIGHT
    assert DiscaSettings(variant="fast").for_model(plain).learning_rate == DEFAULT_LEARNING_RATES["fast"]
    assert DEFAULT_LEARNING_RATES["full"] < DEFAULT_LEARNING_RATES["fast"]

    tuned_values = {"recall_weight": 0.3, "learning_rate": {"fast": 1e-4}}
    tuned = Manifest.from_dict(plain.to_dict() | {"adaptation": tuned_values})
    fast = DiscaSettings(variant="fast").for_model(tuned)
    assert (fast.learning_rate, fast.recall_weight) == (1e-4, 0.3)
    # A variant the model has no rate for falls back to DIAL's; explicit values always win.
    assert DiscaSettings(variant="full").for_model(tuned).learning_rate == DEFAULT_LEARNING_RATES["full"]
    mine = DiscaSettings(variant="fast", learning_rate=0.05, recall_weight=2.0).for_model(tuned)
    assert (mine.learning_rate, mine.recall_weight) == (0.05, 2.0)
    # What a session stores is resolved, so it survives a change of defaults.
    assert DiscaSettings.from_dict(fast.to_dict()) == fast
    assert DiscaAdapter(*tiny_model, DiscaSettings(variant="fast")).settings.learning_rate is not None

    for bad in ({"recall_weight": -1}, {"recall_weight": "high"}, {"learning_rate": 1e-3},
                {"learning_rate": {"fast": 0}}):
        with pytest.raises(ManifestError, match="adaptation"):
            Manifest.from_dict(plain.to_dict() | {"adaptation": bad})


def test_shipped_models_carry_their_tuned_adaptation_defaults():
    from pathlib import Path

    from dial.adaptation.disca import DEFAULT_LEARNING_RATES, DEFAULT_RECALL_WEIGHT
    from dial.model.manifest import Manifest

    models = Path(__file__).resolve().parents[2] / "models"
    buildings = DiscaSettings(variant="fast").for_model(Manifest.load(models / "buildings" / "2"))
    assert (buildings.learning_rate, buildings.recall_weight) == (DEFAULT_LEARNING_RATES["fast"], 0.3)
    landcover = DiscaSettings(variant="fast").for_model(Manifest.load(models / "landcover" / "2"))
    assert (landcover.learning_rate, landcover.recall_weight) == (1e-4, DEFAULT_RECALL_WEIGHT)