"""``dial eval``: K simulated clicks per image, re-predicting after each.

The dataset mIoU after k clicks comes from one confusion matrix accumulated
over all images (not a mean of per-image scores), as in the papers. NoC uses
per-image IoU curves of the foreground class, as RITM does for binary data.

Memory stays bounded on large images: predictions stream through the tiler
one tile row at a time, and only ``(H, W)`` uint8 maps are kept per image.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dial.annotator import SimulatedAnnotator
from dial.adaptation.disca import DiscaSettings
from dial.evaluation.refiners import REFINERS, Refiner, RefinerContext
from dial.imagery.dataset import Dataset
from dial.inference.predictors import OnnxPredictor, TorchPredictor
from dial.metrics import confusion_matrix, iou_per_class, mean_iou, noc_summary
from dial.model.manifest import Manifest, ManifestError
from dial.model.repository import ModelRepository


@dataclass(frozen=True)
class EvalConfig:
    model: str
    data: str
    repo: str = "models"
    binary: str | None = None
    clicks: int = 20
    mode: str = "ac"
    split: str = "val"
    clicker: str = "largest"
    random_top_k: int = 1
    seed: int = 0
    runtime: str = "onnx"
    limit: int | None = None
    disca: DiscaSettings = DiscaSettings()
    sequential: bool = False
    min_region_px: int = 4096
    # 0: the runtime's default (every core); evaluations beside a training run take one.
    threads: int = 0


def load_predictor(repo: ModelRepository, model: str, runtime: str, threads: int = 0):
    if runtime == "onnx":
        manifest = repo.manifest(model)
        return OnnxPredictor(repo.onnx_path(model), manifest, provider="cpu", intra_op_threads=threads)
    if threads:
        import torch

        torch.set_num_threads(threads)
    net, manifest = repo.load_torch(model)
    return TorchPredictor(net, manifest)


def select_images(dataset: Dataset, manifest: Manifest, split: str, binary: str | None) -> tuple[Dataset, str]:
    """The images to evaluate on, and a description of that choice for the report."""
    training = manifest.training or {}
    trained_here = training.get("dataset") == dataset.name and training.get("binary_class") == binary
    if split == "all":
        if trained_here:
            return dataset, "all (includes the model's training images)"
        return dataset, "all (the model was not trained on this dataset)"
    if trained_here:
        val = training["split"]["val"]
        present = {s.name for s in dataset.samples}
        missing = [name for name in val if name not in present]
        if missing:
            # A folder can share the training dataset's name without holding its images
            # (other tiles of the same survey, a copy with a subset): there is no
            # validation split to take from it, and guessing one would be wrong.
            raise ManifestError(
                f"{dataset.name} has the name of {manifest.name}:{manifest.version}'s training dataset but "
                f"lacks {len(missing)} of its {len(val)} validation images (e.g. {missing[0]!r}); "
                "use --split all to evaluate on every image in --data"
            )
        return dataset.subset(val), "val (recorded in the model manifest)"
    return dataset, "all (the model was not trained on this dataset)"


def run_evaluation(config: EvalConfig, log: Callable[[str], None] = lambda m: None,
                   refiner_factory: Callable[..., Refiner] | None = None) -> dict:
    repo = ModelRepository(config.repo)
    predictor = load_predictor(repo, config.model, config.runtime, config.threads)
    manifest = predictor.manifest
    dataset = Dataset.open(config.data, binary=config.binary)
    if dataset.n_classes != manifest.n_classes:
        raise ManifestError(
            f"model {manifest.name}:{manifest.version} has {manifest.n_classes} classes "
            f"{list(manifest.class_names)} but {dataset.name} has {dataset.n_classes} "
            f"{list(dataset.class_names)}; use --binary CLASS for a one-against-rest view"
        )
    dataset, split_note = select_images(dataset, manifest, config.split, config.binary)
    if config.limit:
        dataset = dataset.subset([s.name for s in dataset.samples[: config.limit]])
    disca = config.disca.for_model(manifest).validate()
    context = RefinerContext(repo=repo, model=config.model, disca=disca, sequential=config.sequential,
                             min_region_px=config.min_region_px)
    refiner = (refiner_factory or REFINERS[config.mode])(predictor, context)
    n, k_max = manifest.n_classes, config.clicks
    cms = np.zeros((k_max + 1, n, n), dtype=np.int64)
    curves: list[list[float]] = []
    click_seconds: list[float] = []
    clicks_made = 0
    for index, (sample, image, truth) in enumerate(dataset):
        annotator = SimulatedAnnotator(n_classes=n, mode=config.clicker,
                                       random_top_k=config.random_top_k, seed=config.seed + index)
        prediction = refiner.start(image)
        image_cms = [confusion_matrix(prediction, truth, n)]
        for _ in range(k_max):
            click = annotator.next_click(prediction, truth)
            if click is not None:
                started = time.perf_counter()
                prediction = refiner.add_click(click)
                click_seconds.append(time.perf_counter() - started)
                clicks_made += 1
            image_cms.append(confusion_matrix(prediction, truth, n))
        cms += np.stack(image_cms)
        curve = [float(iou_per_class(cm)[1]) if n == 2 else float(mean_iou(cm)) for cm in image_cms]
        curves.append(curve)
        log(f"[{index + 1}/{len(dataset)}] {sample.name}: IoU {curve[0]:.3f} -> {curve[-1]:.3f}")

    correct = np.trace(cms, axis1=1, axis2=2)
    report = {
        "model": f"{manifest.name}:{manifest.version}",
        "mode": config.mode,
        "dataset": dataset.name,
        "binary_class": config.binary,
        "split": split_note,
        "images": [s.name for s in dataset.samples],
        "clicks_per_image": k_max,
        "clicker": {"mode": config.clicker, "random_top_k": config.random_top_k, "seed": config.seed},
        "class_names": list(manifest.class_names),
        "miou": [float(mean_iou(cm)) for cm in cms],
        "per_class_iou": {
            "0": _named(iou_per_class(cms[0]), manifest.class_names),
            str(k_max): _named(iou_per_class(cms[-1]), manifest.class_names),
        },
        "pixels_corrected_per_click": float((correct[-1] - correct[0]) / clicks_made) if clicks_made else 0.0,
        "clicks_made": clicks_made,
        "seconds_per_click": float(np.mean(click_seconds)) if click_seconds else 0.0,
        "runtime": getattr(refiner, "provider", getattr(predictor, "provider", config.runtime)),
    }
    if config.mode in ("disca", "both"):
        report["adaptation"] = disca.to_dict() | {"sequential": config.sequential}
        if config.mode == "both":
            report["adaptation"]["min_region_px"] = config.min_region_px
    if n == 2:
        report["iou"] = [float(iou_per_class(cm)[1]) for cm in cms]
        report["noc"] = noc_summary(curves, thresholds=(0.85, 0.90), cap=20)
        if k_max < 20:
            report["noc"]["note"] = f"curves stop at {k_max} clicks; images not reaching a threshold count as 20"
    report["per_image_curves"] = dict(zip(report["images"], curves))
    return report


def _named(values: np.ndarray, names) -> dict:
    return {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, values)}


def write_report(report: dict, path: str | Path) -> None:
    import json

    Path(path).write_text(json.dumps(report, indent=2) + "\n")
