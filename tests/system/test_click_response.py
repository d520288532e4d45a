"""Behaviour: under the shipped recipe a click decides the region it lands in.

A tiny click-fusion network is trained as ``landcover`` is (label swaps,
the fused click path, a cone wider than the regions), on synthetic scenes.
On scenes it never saw, a region is given a class the image does not show
(as a region the click-free map gets wrong), and one click of that class
goes inside it: most of the region must follow the click while the rest of
the image stays as it was.

Training the network takes minutes on two cores, so this behavioural test runs
with the system tests (marked slow), not the core's unit tests.
"""
import numpy as np
import pytest

from dial.inference.predictors import TorchPredictor
from dial.inference.tiling import predict_labels
from dial.model.repository import ModelRepository
from dial.training.label_swaps import candidate_segments, clicks_inside
from dial.training.trainer import TrainConfig, train
from tests.support.synthetic import make_dataset, make_scene, scene_seed

# Regions up to about half the cone's area (radius 25 px: 1963 px); larger
# fields need more than one click, as they do from annotators.
MAX_REGION_PX = 1000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def click_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("click-response")
    make_dataset(root / "scenes", 8, size=128, seed=1)
    train(TrainConfig(data=str(root / "scenes"), name="clicky", repo=str(root / "models"),
                      architecture="Linknet+click-fusion", crop_px=128, batch_size=4, iterations=300,
                      learning_rate=3e-3, radius_px=25.0, max_clicks=3, label_swap_fraction=0.7,
                      checkpoint_every=10**6, workdir=str(root / "work"), tile_px=128, overlap_px=32),
          command="test")
    net, manifest = ModelRepository(root / "models").load_torch("clicky")
    return TorchPredictor(net, manifest), manifest


def test_one_click_relabels_most_of_a_wrong_region(click_model):
    predictor, manifest = click_model
    rng = np.random.default_rng(0)
    followed, elsewhere = [], []
    for i in range(4):
        scene = make_scene(128, 128, seed=scene_seed(7, i), n_classes=manifest.n_classes)
        before = predict_labels(predictor, scene.image)
        for region in candidate_segments(scene.mask):
            if region.sum() > MAX_REGION_PX:
                continue
            shown = int(np.bincount(before[region]).argmax())
            wanted = (shown + 1 + int(rng.integers(manifest.n_classes - 1))) % manifest.n_classes
            if (before[region] == wanted).mean() >= 0.2:
                continue  # the click-free map already shows some of the wanted class: not a wrong region
            after = predict_labels(predictor, scene.image, clicks_inside(region, wanted, 1, rng))
            followed.append(float((after[region] == wanted).mean()))
            elsewhere.append(float((after[~region] != before[~region]).mean()))
    assert len(followed) >= 8  # enough wrong regions were tried
    assert np.median(followed) > 0.6, sorted(np.round(followed, 2))
    assert np.mean(elsewhere) < 0.05
