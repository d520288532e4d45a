"""The superpixel rule: a click relabels its SLIC superpixel where the map agrees with the clicked pixel."""
import numpy as np
import pytest

from dial.clicks import Click
from dial.inference.superpixels import relabel_clicked_superpixels, slic_segments


def two_fields(size: int = 64) -> np.ndarray:
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[:, : size // 2] = (200, 180, 40)
    image[:, size // 2 :] = (30, 90, 160)
    return image


def test_superpixels_follow_the_edge_between_two_fields():
    segments = slic_segments(two_fields(), region_px=256)
    left, right = set(np.unique(segments[:, :32])), set(np.unique(segments[:, 32:]))
    assert len(np.unique(segments)) > 2
    assert not left & right


def test_uint16_imagery_segments_like_its_uint8_version():
    image = two_fields()
    assert np.array_equal(slic_segments(image, region_px=256),
                          slic_segments(image.astype(np.uint16) * 257, region_px=256))


def test_a_click_relabels_only_its_superpixel_and_only_pixels_predicted_like_it():
    segments = np.zeros((4, 6), dtype=np.int32)
    segments[:, 3:] = 1
    labels = np.zeros((4, 6), dtype=np.uint8)
    labels[0, 4] = 2  # predicted differently from the clicked pixel: kept
    out = relabel_clicked_superpixels(labels, segments, [Click(2, 5, 1)])
    expected = np.zeros((4, 6), dtype=np.uint8)
    expected[:, 3:] = 1
    expected[0, 4] = 2
    assert np.array_equal(out, expected)
    assert labels.max() == 2 and (labels[:, 3:] != 1).all()  # the input is not changed


def test_the_clicked_pixel_ends_in_its_class_even_against_the_reference():
    segments = np.zeros((3, 3), dtype=np.int32)
    labels = np.zeros((3, 3), dtype=np.uint8)
    reference = np.zeros((3, 3), dtype=np.uint8)
    reference[1, 1] = 3
    out = relabel_clicked_superpixels(labels, segments, [Click(1, 1, 2)], reference=reference)
    assert out[1, 1] == 2 and (np.delete(out.ravel(), 4) == 0).all()


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="differ in shape"):
        relabel_clicked_superpixels(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.int32), [])


class AllZeroPredictor:
    """A network that calls every pixel class 0, so only the refiner can change the map."""

    def __init__(self, manifest):
        self.manifest = manifest

    def logits(self, batch):
        out = np.zeros((batch.shape[0], self.manifest.n_classes) + batch.shape[2:], dtype=np.float32)
        out[:, 0] = 1.0
        return out


def test_superpixel_baseline_relabels_the_clicked_superpixel_within_its_field(tiny_manifest):
    from dial.evaluation.refiners import REFINERS

    image = two_fields(128)
    refiner = REFINERS["superpixel"](AllZeroPredictor(tiny_manifest), None)
    assert (refiner.start(image) == 0).all()
    after = refiner.add_click(Click(64, 100, 3))
    segments = slic_segments(image)
    clicked = segments == segments[64, 100]
    assert np.array_equal(after == 3, clicked)
    assert clicked.sum() > 1000 and not clicked[:, :64].any()
    again = refiner.add_click(Click(64, 20, 2))
    assert (again == 3).sum() == clicked.sum() and again[64, 20] == 2  # the first correction stays
    assert refiner.clicks == [Click(64, 100, 3), Click(64, 20, 2)]


def test_superpixel_mode_in_dial_eval_starts_from_the_click_free_map(tiny_repo, synthetic_dataset):
    from dial.evaluation.interactive import EvalConfig, run_evaluation

    ac = run_evaluation(EvalConfig(model="tiny", data=str(synthetic_dataset), repo=str(tiny_repo), clicks=2))
    report = run_evaluation(EvalConfig(model="tiny", data=str(synthetic_dataset), repo=str(tiny_repo), clicks=2,
                                       mode="superpixel"))
    assert report["mode"] == "superpixel" and "adaptation" not in report
    assert report["miou"][0] == pytest.approx(ac["miou"][0])
    assert report["clicks_made"] > 0 and report["miou"][1] != report["miou"][0]


def test_ac_superpixel_carries_a_click_the_network_ignored_over_its_superpixel(tiny_manifest):
    from dial.evaluation.refiners import REFINERS

    image = two_fields(128)
    refiner = REFINERS["ac-superpixel"](AllZeroPredictor(tiny_manifest), None)
    assert (refiner.start(image) == 0).all()
    segments = slic_segments(image)
    after = refiner.add_click(Click(64, 100, 3))
    assert np.array_equal(after == 3, segments == segments[64, 100])
    after = refiner.add_click(Click(64, 20, 2))
    assert np.array_equal(after == 2, segments == segments[64, 20])
    assert (after == 3).sum() == (segments == segments[64, 100]).sum()  # the earlier click still holds
