import numpy as np
import pytest

from dial.metrics import (
    clicks_to_reach,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    noc_summary,
    pixel_accuracy,
    pixels_corrected,
)


def test_confusion_matrix_counts_truth_by_prediction_and_skips_ignore():
    truth = np.array([[0, 1, 1], [0, 255, 2]])
    prediction = np.array([[0, 1, 0], [1, 2, 2]])
    cm = confusion_matrix(prediction, truth, n_classes=3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[1, 1, 0], [1, 1, 0], [0, 0, 1]])


def test_confusion_matrix_honours_a_custom_ignore_index():
    truth = np.array([0, 1, 9])
    prediction = np.array([0, 0, 1])
    np.testing.assert_array_equal(confusion_matrix(prediction, truth, 2, ignore_index=9), [[1, 0], [1, 0]])


@pytest.mark.parametrize(
    "prediction, truth",
    [([0, 2], [0, 1]), ([0, 1], [0, 7]), ([0, -1], [0, 1])],
)
def test_confusion_matrix_rejects_class_ids_out_of_range(prediction, truth):
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array(prediction), np.array(truth), n_classes=2)


def test_confusion_matrix_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 2)


def test_iou_per_class_by_hand_with_absent_class_as_nan():
    # truth 0: 3 px (2 right, 1 -> 1); truth 1: 2 px (1 right, 1 -> 0); class 2 absent.
    cm = np.array([[2, 1, 0], [1, 1, 0], [0, 0, 0]])
    iou = iou_per_class(cm)
    np.testing.assert_allclose(iou[:2], [2 / 4, 1 / 3])
    assert np.isnan(iou[2])
    assert mean_iou(cm) == pytest.approx((2 / 4 + 1 / 3) / 2)
    assert pixel_accuracy(cm) == pytest.approx(3 / 5)


def test_a_class_only_predicted_counts_with_iou_zero():
    cm = np.array([[3, 1], [0, 0]])
    np.testing.assert_allclose(iou_per_class(cm), [0.75, 0.0])
    assert mean_iou(cm) == pytest.approx(0.375)


def test_empty_matrix_gives_nan_scores():
    cm = np.zeros((2, 2), np.int64)
    assert np.isnan(mean_iou(cm))
    assert np.isnan(pixel_accuracy(cm))


def test_pixels_corrected_is_net_and_can_be_negative():
    before = np.array([[5, 3], [2, 10]])
    after = np.array([[7, 1], [3, 9]])  # +2 right on class 0, -1 on class 1
    assert pixels_corrected(before, after) == 1
    assert pixels_corrected(after, before) == -1


def test_pixels_corrected_from_label_maps():
    truth = np.array([0, 0, 1, 1, 1])
    before = confusion_matrix(np.array([1, 1, 1, 0, 0]), truth, 2)
    after = confusion_matrix(np.array([0, 0, 1, 1, 0]), truth, 2)
    assert pixels_corrected(before, after) == 3


def test_pixels_corrected_rejects_matrices_of_different_truths():
    with pytest.raises(ValueError, match="ground truth"):
        pixels_corrected(np.array([[1, 0], [0, 1]]), np.array([[2, 0], [0, 1]]))


CURVE = [0.50, 0.70, 0.86, 0.91, 0.95]


@pytest.mark.parametrize("threshold, expected", [(0.85, 2), (0.90, 3), (0.95, 4), (0.99, 20), (0.5, 0)])
def test_clicks_to_reach_counts_clicks_from_zero(threshold, expected):
    assert clicks_to_reach(CURVE, threshold) == expected


def test_clicks_to_reach_ritm_convention_needs_at_least_one_click():
    assert clicks_to_reach([0.9, 0.8, 0.95], 0.85) == 0
    assert clicks_to_reach([0.9, 0.8, 0.95], 0.85, min_clicks=1) == 2


def test_clicks_to_reach_ignores_clicks_past_the_cap():
    curve = [0.1] * 6 + [0.95]
    assert clicks_to_reach(curve, 0.9, cap=5) == 5
    assert clicks_to_reach(curve, 0.9, cap=6) == 6


def test_noc_summary_by_hand():
    curves = [
        [0.5, 0.86, 0.92],  # NoC@85 = 1, NoC@90 = 2
        [0.88, 0.89, 0.89],  # NoC@85 = 0, never 90 -> cap
        [0.1, 0.2, 0.3],  # never either -> cap
    ]
    summary = noc_summary(curves, thresholds=(0.85, 0.90), cap=20)
    assert summary["n_images"] == 3
    assert summary["noc@85"] == pytest.approx((1 + 0 + 20) / 3)
    assert summary["noc@90"] == pytest.approx((2 + 20 + 20) / 3)
    assert summary["never_reached@85"] == pytest.approx(1 / 3)
    assert summary["never_reached@90"] == pytest.approx(2 / 3)


def test_noc_summary_reaching_at_the_cap_is_not_never():
    summary = noc_summary([[0.0, 0.0, 0.95]], thresholds=(0.9,), cap=2)
    assert summary["noc@90"] == 2
    assert summary["never_reached@90"] == 0.0


def test_noc_summary_needs_curves():
    with pytest.raises(ValueError):
        noc_summary([])
