import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from tests.support.synthetic import (
    colour_mask,
    make_dataset,
    make_scene,
    make_uncertain_scene,
    scene_seed,
)

BUILDING, ROAD, VEGETATION, CAR = 1, 2, 3, 6


def test_same_seed_same_scene_other_seed_other_scene():
    a = make_scene(96, 128, seed=3)
    b = make_scene(96, 128, seed=3)
    c = make_scene(96, 128, seed=4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert not np.array_equal(a.mask, c.mask)


def test_scene_arrays_follow_the_conventions():
    scene = make_scene(80, 120, seed=0)
    assert scene.image.shape == (80, 120, 3) and scene.image.dtype == np.uint8
    assert scene.mask.shape == (80, 120) and scene.mask.dtype == np.uint8
    assert scene.class_names == ("background", "building", "road", "vegetation", "tree", "water")
    assert scene.n_classes == len(scene.colours) == 6
    assert scene.domain == "source"


@pytest.mark.parametrize("domain", ["source", "target"])
@pytest.mark.parametrize("seed", range(4))
def test_every_class_appears_in_a_256_scene(domain, seed):
    scene = make_scene(256, 256, seed=seed, domain=domain, n_classes=7)
    np.testing.assert_array_equal(np.unique(scene.mask), np.arange(7))


def test_class_schemes_share_one_layout():
    six = make_scene(128, 128, seed=5, n_classes=6).mask
    seven = make_scene(128, 128, seed=5, n_classes=7).mask
    binary = make_scene(128, 128, seed=5, n_classes=2)
    assert (seven == CAR).any()
    # Cars are road in the six-class scheme, and only buildings survive the binary one.
    np.testing.assert_array_equal(six, np.where(seven == CAR, ROAD, seven))
    np.testing.assert_array_equal(binary.mask, (six == BUILDING).astype(np.uint8))
    assert binary.class_names == ("background", "building")


def test_colour_alone_does_not_separate_the_classes():
    for domain in ("source", "target"):
        scene = make_scene(192, 192, seed=1, domain=domain)
        pixels = scene.image.reshape(-1, 3).astype(np.float64)
        labels = scene.mask.ravel()
        means = np.stack([pixels[labels == k].mean(axis=0) for k in range(scene.n_classes)])
        nearest = np.argmin(((pixels[:, None, :] - means[None]) ** 2).sum(axis=-1), axis=1)
        accuracy = (nearest == labels).mean()
        assert 0.5 < accuracy < 0.9


def test_shadows_darken_the_ground_and_keep_its_label():
    scene = make_scene(256, 256, seed=2)
    brightness = scene.image.astype(np.float64).mean(axis=-1)
    building = scene.mask == BUILDING
    # Source shadows fall down and to the right of each footprint.
    beside = np.zeros_like(building)
    beside[3:, 3:] = building[:-3, :-3]
    shaded_ground = beside & ~building & (scene.mask == 0)
    open_ground = (scene.mask == 0) & ~ndimage.binary_dilation(building, iterations=12)
    assert shaded_ground.sum() > 100
    assert brightness[shaded_ground].mean() < 0.7 * brightness[open_ground].mean()


def test_target_domain_differs_in_palette_and_scale():
    def stats(domain):
        veg_rgb, building_areas, images = [], [], []
        for seed in range(3):
            scene = make_scene(192, 192, seed=seed, domain=domain)
            veg_rgb.append(scene.image[scene.mask == VEGETATION].mean(axis=0))
            labels, count = ndimage.label(scene.mask == BUILDING)
            building_areas.append((scene.mask == BUILDING).sum() / count)
            images.append(scene.image.reshape(-1, 3))
        return np.mean(veg_rgb, axis=0), np.mean(building_areas), np.concatenate(images)

    src_veg, src_area, src_pixels = stats("source")
    tgt_veg, tgt_area, tgt_pixels = stats("target")
    assert src_veg[1] > src_veg[0]  # green vegetation ...
    assert tgt_veg[0] > tgt_veg[1]  # ... turns dry and brown
    assert tgt_area > 1.5 * src_area  # objects 1.5x larger: footprints ~2.25x
    assert abs(tgt_pixels.mean() - src_pixels.mean()) > 20
    assert make_scene(64, 64, seed=0, domain="target").domain == "target"


@pytest.mark.parametrize(
    "kwargs", [{"domain": "winter"}, {"n_classes": 5}, {"height": 8}]
)
def test_invalid_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        make_scene(**kwargs)


def test_domain_shift_window_holds_a_labelled_target_scene():
    base = make_scene(160, 160, seed=9)
    hard = make_uncertain_scene(160, 160, seed=9, kind="domain_shift", hard_fraction=0.25)
    row, col, height, width = hard.hard_window
    assert (height, width) == (80, 80)
    assert 0 <= row <= 80 and 0 <= col <= 80
    inside = np.zeros((160, 160), bool)
    inside[row: row + height, col: col + width] = True
    np.testing.assert_array_equal(hard.scene.image[~inside], base.image[~inside])
    np.testing.assert_array_equal(hard.scene.mask[~inside], base.mask[~inside])
    patch = make_scene(height, width, seed=9, domain="target")
    np.testing.assert_array_equal(hard.scene.mask[inside].reshape(height, width), patch.mask)
    assert abs(hard.scene.image[inside].mean() - base.image[inside].mean()) > 20


def test_haze_window_keeps_labels_and_washes_out_contrast():
    base = make_scene(160, 160, seed=9)
    hard = make_uncertain_scene(160, 160, seed=9, kind="haze")
    row, col, height, width = hard.hard_window
    window = (slice(row, row + height), slice(col, col + width))
    np.testing.assert_array_equal(hard.scene.mask, base.mask)
    assert hard.scene.image[window].std() < 0.6 * base.image[window].std()
    assert hard.kind == "haze"


def test_make_dataset_writes_colour_masks_and_a_legend(tmp_path):
    names = make_dataset(tmp_path, 3, size=(48, 64), seed=2, domain="target", n_classes=7)
    assert names == ["target_0000", "target_0001", "target_0002"]
    legend = json.loads((tmp_path / "legend.json").read_text())
    assert [c["index"] for c in legend["classes"]] == list(range(7))
    assert legend["classes"][6]["name"] == "car"
    assert legend["unannotated"]["rgb"] == [0, 0, 0]
    colours = [tuple(c["rgb"]) for c in legend["classes"]]
    assert len(set(colours)) == 7 and (0, 0, 0) not in colours

    for i, name in enumerate(names):
        image = np.asarray(Image.open(tmp_path / "images" / f"{name}.png"))
        mask_rgb = np.asarray(Image.open(tmp_path / "masks" / f"{name}.png"))
        assert image.shape == mask_rgb.shape == (48, 64, 3)
        # Decode the colour mask through the legend, as a reader would.
        decoded = np.full(mask_rgb.shape[:2], -1)
        for k, colour in enumerate(colours):
            decoded[(mask_rgb == colour).all(axis=-1)] = k
        scene = make_scene(48, 64, seed=scene_seed(2, i), domain="target", n_classes=7)
        np.testing.assert_array_equal(decoded, scene.mask)
        np.testing.assert_array_equal(image, scene.image)


def test_dataset_seeds_do_not_overlap_between_neighbouring_seeds():
    assert scene_seed(0, 1) != scene_seed(1, 0)
    assert len({scene_seed(s, i) for s in range(5) for i in range(5)}) == 25


def test_colour_mask_paints_ignore_black():
    mask = np.array([[0, 1], [255, 1]], np.uint8)
    rgb = colour_mask(mask, ((10, 20, 30), (40, 50, 60)))
    np.testing.assert_array_equal(rgb[1, 0], [0, 0, 0])
    np.testing.assert_array_equal(rgb[0, 1], [40, 50, 60])
