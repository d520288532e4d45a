"""The click-fusion path's learning rate is set apart from the base network's, and checked at start-up."""
import pytest
import torch

from tests.support.synthetic import make_dataset
from dial.training.trainer import FUSION_LR_FACTOR, TrainConfig, train


def _config(root, **overrides) -> TrainConfig:
    settings = dict(data=str(root / "scenes"), name="rates", repo=str(root / "models"),
                    architecture="Linknet+click-fusion", crop_px=64, batch_size=2, iterations=2,
                    checkpoint_every=1, workdir=str(root / "work"), tile_px=64, overlap_px=16)
    return TrainConfig(**{**settings, **overrides})


def _train(root, **overrides):
    train(_config(root, **overrides), command="test")
    state = torch.load(root / "work" / "rates" / "checkpoint.pt", map_location="cpu", weights_only=False)
    return [group["max_lr"] for group in state["optimiser"]["param_groups"]]


@pytest.fixture()
def scenes(tmp_path):
    make_dataset(tmp_path / "scenes", 4, size=64, seed=3)
    return tmp_path


def test_the_fusion_path_learns_at_its_own_rate(scenes):
    assert _train(scenes, learning_rate=5e-5, fusion_learning_rate=5e-3) == pytest.approx([5e-5, 5e-3])


def test_without_a_fusion_rate_the_fusion_path_learns_faster_by_the_default_factor(scenes):
    assert _train(scenes, learning_rate=1e-3) == pytest.approx([1e-3, 1e-3 * FUSION_LR_FACTOR])


@pytest.mark.parametrize("overrides, message", [
    ({"architecture": "Linknet", "fusion_learning_rate": 1e-3}, r"needs a \+click-fusion architecture"),
    ({"fusion_learning_rate": 0.0}, "learning rates must be > 0"),
    ({"learning_rate": -1.0}, "learning rates must be > 0"),
])
def test_bad_rates_are_refused_before_training(overrides, message):
    config = TrainConfig(data="unused", name="rates", **{"architecture": "Linknet+click-fusion", **overrides})
    with pytest.raises(ValueError, match=message):
        config.validate()


def test_a_frozen_base_keeps_its_weights_and_statistics_while_the_fusion_learns(scenes):
    from dial.model.repository import ModelRepository

    repo = ModelRepository(scenes / "models")
    train(_config(scenes, name="frozen", architecture="Linknet"), command="test")
    _train(scenes, init_from="frozen:1", freeze_base=True, fusion_learning_rate=5e-2, label_swap_fraction=0.5,
           architecture="Linknet+gated-click-fusion", iterations=3)
    base, _ = repo.load_torch("frozen:1")
    fused, manifest = repo.load_torch("rates:1")
    assert manifest.training["config"]["freeze_base"] is True
    base_state = base.state_dict()
    for name, value in fused.net.state_dict().items():   # running means and variances included
        assert torch.equal(value, base_state[name]), name
    assert any(p.abs().sum() > 0 for p in fused.fusion[-1].parameters())


@pytest.mark.parametrize("overrides, message", [
    ({"architecture": "Linknet", "freeze_base": True, "init_from": "m:1"}, r"needs a \+click-fusion"),
    ({"freeze_base": True}, "name it with init_from"),
])
def test_freeze_base_is_refused_where_there_is_no_base_to_keep(overrides, message):
    config = TrainConfig(data="unused", name="rates", **{"architecture": "Linknet+click-fusion", **overrides})
    with pytest.raises(ValueError, match=message):
        config.validate()
