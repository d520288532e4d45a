"""Segmentation and interaction metrics as pure functions over arrays.

Everything starts from a confusion matrix (rows = true class, columns =
predicted class), so per-image matrices can be summed into a dataset score
without keeping the label maps.

Click counts follow RITM's ``compute_noc_metric``: NoC@t is the number of
clicks after which IoU first reaches ``t``, capped at 20 when it never does.
One difference is deliberate. RITM's curves start at click 1 because its
network cannot predict without a click; an AC network predicts on its own,
and DIAL's curves start at 0 clicks, so an image whose no-click map already
meets the threshold costs 0 clicks here. ``min_clicks=1`` restores RITM's
count exactly.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def confusion_matrix(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    n_classes: int,
    ignore_index: int = 255,
) -> np.ndarray:
    """``(n_classes, n_classes)`` int64 counts; rows are truth, columns prediction.

    Pixels whose truth is ``ignore_index`` are left out. Any other value
    outside ``0..n_classes-1``, in either map, is an error rather than
    silently dropped: it would bias every score computed from the matrix.
    """
    prediction = np.asarray(prediction)
    ground_truth = np.asarray(ground_truth)
    if prediction.shape != ground_truth.shape:
        raise ValueError(f"prediction {prediction.shape} and ground_truth {ground_truth.shape} differ in shape")
    valid = ground_truth != ignore_index
    truth = ground_truth[valid].astype(np.int64)
    predicted = prediction[valid].astype(np.int64)
    for name, values in (("ground_truth", truth), ("prediction", predicted)):
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"{name} holds class ids outside 0..{n_classes - 1}")
    counts = np.bincount(truth * n_classes + predicted, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).astype(np.int64)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """Intersection over union of each class; NaN where the class is in neither map."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    iou = np.full(tp.shape, np.nan)
    np.divide(tp, union, out=iou, where=union > 0)
    return iou


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over the classes present in truth or prediction; NaN if there are none."""
    iou = iou_per_class(cm)
    present = ~np.isnan(iou)
    return float(iou[present].mean()) if present.any() else float("nan")


def pixel_accuracy(cm: np.ndarray) -> float:
    """Share of counted pixels predicted right; NaN for an empty matrix."""
    cm = np.asarray(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def pixels_corrected(cm_before: np.ndarray, cm_after: np.ndarray) -> int:
    """Net number of wrong pixels made right between two predictions of the same truth.

    Negative when more pixels were broken than fixed. The AC paper reports
    about 5 000 per click on whole aerial tiles.
    """
    cm_before, cm_after = np.asarray(cm_before), np.asarray(cm_after)
    if cm_before.shape != cm_after.shape:
        raise ValueError(f"confusion matrices differ in shape: {cm_before.shape} vs {cm_after.shape}")
    if not np.array_equal(cm_before.sum(axis=1), cm_after.sum(axis=1)):
        raise ValueError("confusion matrices do not share the same ground truth (row sums differ)")
    return int(np.trace(cm_after)) - int(np.trace(cm_before))


def clicks_to_reach(iou_curve: Sequence[float], threshold: float, cap: int = 20, *, min_clicks: int = 0) -> int:
    """NoC: the first click count ``k`` with ``iou_curve[k] >= threshold``, or ``cap`` if none.

    ``iou_curve[k]`` is the IoU after ``k`` clicks, ``iou_curve[0]`` the
    no-click prediction. Only counts ``min_clicks..cap`` are looked at.
    """
    curve = np.asarray(iou_curve, dtype=np.float64)[: cap + 1]
    reached = np.flatnonzero(curve[min_clicks:] >= threshold)
    return int(reached[0]) + min_clicks if reached.size else cap


def noc_summary(
    curves: Iterable[Sequence[float]],
    thresholds: Sequence[float] = (0.85, 0.90),
    cap: int = 20,
    *,
    min_clicks: int = 0,
) -> dict:
    """Mean NoC and the share of images never reaching each threshold within ``cap`` clicks.

    Keys are ``"noc@85"`` and ``"never_reached@85"`` (threshold in percent)
    for each threshold, plus ``"n_images"``. "Never reached" counts images
    whose curve stays below the threshold up to ``cap`` clicks; RITM counts
    images whose NoC equals the cap, which also takes in those reaching it at
    exactly the last click.
    """
    curves = [np.asarray(curve, dtype=np.float64) for curve in curves]
    if not curves:
        raise ValueError("noc_summary needs at least one curve")
    summary: dict = {"n_images": len(curves)}
    for threshold in thresholds:
        key = f"{threshold * 100:g}"
        counts = [clicks_to_reach(curve, threshold, cap, min_clicks=min_clicks) for curve in curves]
        never = [not np.any(curve[min_clicks: cap + 1] >= threshold) for curve in curves]
        summary[f"noc@{key}"] = float(np.mean(counts))
        summary[f"never_reached@{key}"] = float(np.mean(never))
    return summary
