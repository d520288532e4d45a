"""MetaSeg: predict each predicted segment's IoU from its uncertainty statistics.

A segment is a 4-connected component of one predicted class. Its metrics
(SCIENCE.md, MetaSeg) are sizes of the segment, its interior and its
boundary with the relative sizes; the mean entropy E and margin
D = 1 - p1 + p2 over segment, interior and boundary with the relative
variants; and the mean probability of each class. A regressor (gradient
boosting, 100 trees of depth 4, learning rate 0.1, as in the paper; linear
regression as the baseline) maps them to the segment's IoU with the ground
truth, where the truth side is the union of same-class true components the
segment touches.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage

from dial.acquisition.model import file_sha256, record_head
from dial.inference.classwise import class_argmax, entropy_from_logits, logits_of, margin_from_logits

REGRESSOR_FILE = "metaseg.joblib"
# Segments mostly on unannotated ground truth say nothing about IoU.
MIN_LABELLED_SHARE = 0.5


def segment_map(labels: np.ndarray) -> np.ndarray:
    """(H, W) int32 segment ids 1..N, one per 4-connected component of each predicted class."""
    segments = np.zeros(labels.shape, dtype=np.int32)
    offset = 0
    for class_id in np.unique(labels):
        components, count = ndimage.label(labels == class_id)
        on = components > 0
        segments[on] = components[on] + offset
        offset += count
    return segments


def _interior(segments: np.ndarray) -> np.ndarray:
    padded = np.pad(segments, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    return ((padded[:-2, 1:-1] == centre) & (padded[2:, 1:-1] == centre)
            & (padded[1:-1, :-2] == centre) & (padded[1:-1, 2:] == centre))


def feature_names(n_classes: int) -> list[str]:
    names = ["S", "S_in", "S_bd", "S_rel", "S_in_rel"]
    for m in ("E", "D"):
        names += [f"{m}", f"{m}_in", f"{m}_bd", f"{m}_rel", f"{m}_in_rel"]
    return names + [f"p{k}" for k in range(n_classes)]


def segment_features(probs: np.ndarray, labels: np.ndarray, segments: np.ndarray | None = None):
    """``(segments, X)``: the segment map and an (N, F) float64 matrix, row i for segment id i + 1."""
    segments = segment_map(labels) if segments is None else segments
    n = int(segments.max())
    flat = segments.ravel()
    interior = _interior(segments).ravel()

    def sums(weights=None, where=None):
        ids = flat if where is None else flat[where]
        w = None if weights is None else (weights if where is None else weights[where])
        return np.bincount(ids, weights=w, minlength=n + 1)[1:].astype(np.float64)

    size, size_in = sums(), sums(where=interior)
    size_bd = size - size_in
    bd = np.maximum(size_bd, 1.0)
    columns = [size, size_in, size_bd, size / bd, size_in / bd]
    logits = logits_of(probs)
    for values in (entropy_from_logits(logits)[0].ravel(), margin_from_logits(logits)[0].ravel()):
        mean = sums(values) / size
        mean_in = sums(values, interior) / np.maximum(size_in, 1.0)
        mean_bd = sums(values, ~interior) / bd
        columns += [mean, mean_in, mean_bd, mean * size / bd, mean_in * size_in / bd]
    columns += [sums(probs[k].ravel()) / size for k in range(probs.shape[0])]
    return segments, np.stack(columns, axis=1)


def segment_iou(labels: np.ndarray, truth: np.ndarray, segments: np.ndarray, n_classes: int,
                ignore_index: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """(IoU per segment, share of the segment's pixels that are labelled)."""
    n = int(segments.max())
    size = np.bincount(segments.ravel(), minlength=n + 1)[1:].astype(np.float64)
    labelled = np.bincount(segments.ravel(), weights=(truth != ignore_index).ravel(), minlength=n + 1)[1:]
    inter = np.zeros(n)
    union_truth = np.zeros(n)
    for class_id in range(n_classes):
        truth_c = truth == class_id
        components, count = ndimage.label(truth_c)
        both = truth_c & (labels == class_id)
        inter += np.bincount(segments[both], minlength=n + 1)[1:]
        if not count:
            continue
        comp_size = np.bincount(components.ravel(), minlength=count + 1).astype(np.float64)
        pairs = np.unique(np.stack([segments[both], components[both]], axis=1), axis=0)
        np.add.at(union_truth, pairs[:, 0] - 1, comp_size[pairs[:, 1]])
    iou = inter / np.maximum(size + union_truth - inter, 1.0)
    return iou, labelled / size


def quality_map(probs: np.ndarray, labels: np.ndarray, regressor) -> np.ndarray:
    """(H, W) float32: 1 - predicted IoU, painted on each segment."""
    segments, features = segment_features(probs, labels)
    predicted = np.clip(regressor.predict(features), 0.0, 1.0)
    painted = np.concatenate([[0.0], 1.0 - predicted]).astype(np.float32)
    return painted[segments]


def load_regressor(path: Path, entry: dict):
    import joblib

    # Only files this code wrote into the model repository are loaded; the
    # side manifest's checksum is verified by the caller before this runs.
    stored = joblib.load(path)
    return stored[entry.get("use", "gbr")]


@dataclass
class MetaSegData:
    features: list[np.ndarray]
    targets: list[np.ndarray]
    images: list[str]


def collect(predict_probs: Callable[[np.ndarray], np.ndarray], dataset, n_classes: int) -> MetaSegData:
    data = MetaSegData([], [], [])
    for sample, image, truth in dataset:
        probs = predict_probs(image)
        labels = class_argmax(probs)
        segments, features = segment_features(probs, labels)
        iou, labelled = segment_iou(labels, truth, segments, n_classes)
        keep = labelled >= MIN_LABELLED_SHARE
        data.features.append(features[keep])
        data.targets.append(iou[keep])
        data.images.append(sample.name)
    return data


def train_regressors(data: MetaSegData, holdout_fraction: float = 0.2, seed: int = 0) -> tuple[dict, dict]:
    """Gradient boosting and linear regression, scored on held-out images, then refit on all."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    def models():
        return {"gbr": GradientBoostingRegressor(n_estimators=100, max_depth=4, learning_rate=0.1, random_state=seed),
                "linear": LinearRegression()}

    order = np.random.default_rng(seed).permutation(len(data.images))
    n_hold = max(1, int(round(len(order) * holdout_fraction))) if len(order) > 1 else 0
    hold, fit = order[:n_hold], order[n_hold:]
    summary: dict = {"images": data.images, "segments": int(sum(len(t) for t in data.targets))}
    if n_hold:
        x_fit = np.concatenate([data.features[i] for i in fit])
        y_fit = np.concatenate([data.targets[i] for i in fit])
        x_hold = np.concatenate([data.features[i] for i in hold])
        y_hold = np.concatenate([data.targets[i] for i in hold])
        for name, model in models().items():
            predicted = np.clip(model.fit(x_fit, y_fit).predict(x_hold), 0, 1)
            summary[f"{name}_holdout_r2"] = float(r2_score(y_hold, predicted))
            summary[f"{name}_holdout_pearson"] = float(np.corrcoef(y_hold, predicted)[0, 1])
    x_all, y_all = np.concatenate(data.features), np.concatenate(data.targets)
    fitted = {name: model.fit(x_all, y_all) for name, model in models().items()}
    return fitted, summary


def save_regressors(regressors: dict, directory: Path, summary: dict, use: str = "gbr") -> Path:
    import joblib

    path = Path(directory) / REGRESSOR_FILE
    joblib.dump(regressors, path)
    record_head(directory, "metaseg", {"file": REGRESSOR_FILE, "sha256": file_sha256(path), "use": use,
                                       "training": summary})
    return path
