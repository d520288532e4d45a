"""``dial eval-al``: patches annotated in a strategy's order, one simulated click each.

For each image the strategy ranks its patches once, on the click-free
prediction; then, patch by patch in that order, the simulated annotator
clicks in the largest error inside the patch and the refiner (AC or DISCA)
re-predicts. With ``rescore`` the strategy instead scores the image again
after every click, with the refiner's current model and clicks, and the best
patch not yet annotated comes next: what an annotator sees when the queue
follows the adapting model.

``miou[k]`` is the dataset mIoU after k patches per image, from
one confusion matrix summed over all images, and ``auc`` is the mean of that
curve: the area under it per patch, comparable between strategies run on the
same images with the same K. ``per_image_miou`` keeps each image's own curve
and ``per_image_patches`` the windows annotated, in order.

Each ranked patch's estimated click cost (RDP on the predicted segments) is
recorded next to its true cost (RDP on the ground-truth segments), so the
cost model can be checked against the truth.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from dial.acquisition import STRATEGIES, AcquisitionModel, get_strategy, rank_patches
from dial.acquisition.cost import click_cost
from dial.acquisition.model import HeadMissing
from dial.adaptation.disca import DiscaSettings
from dial.annotator import SimulatedAnnotator
from dial.evaluation.interactive import select_images
from dial.imagery.dataset import Dataset
from dial.metrics import confusion_matrix, mean_iou
from dial.model.manifest import ManifestError
from dial.model.repository import ModelRepository


@dataclass(frozen=True)
class ActiveConfig:
    model: str
    data: str
    repo: str = "models"
    binary: str | None = None
    strategies: tuple[str, ...] = ("entropy",)
    patches: int = 20
    patch_px: int = 256
    reduction: str = "mean"
    cost_weighting: bool = False
    mode: str = "ac"
    # disca/both: which parameters adapt (see DiscaSettings)
    variant: str = "full"
    # disca/both: Adam lr; None is the model's tuned rate, else the variant's default
    learning_rate: float | None = None
    # disca/both: lambda of the L1 recall term; None is the model's tuned value, else DISCA's default
    recall_weight: float | None = None
    split: str = "val"
    runtime: str = "onnx"
    limit: int | None = None
    seed: int = 0
    # disca/both: seeds the draws of which older crops each step replays. Orders other than
    # random's are deterministic, so this is what measures a strategy's own spread.
    adapt_seed: int = 0
    # Re-rank the patches not yet annotated after every click (see the module docstring).
    rescore: bool = False


def _refiner_factory(mode: str):
    from dial.evaluation.refiners import REFINERS

    if mode not in REFINERS:
        raise ValueError(f"mode {mode!r} is not available; refiners: {sorted(REFINERS)}")
    return REFINERS[mode]


def _make_refiner(config: ActiveConfig, predictor, repo: ModelRepository, disca: DiscaSettings):
    from dial.evaluation.refiners import RefinerContext

    factory = _refiner_factory(config.mode)
    return factory(predictor, RefinerContext(repo=repo, model=config.model, disca=disca))


def _pearson(a: list[float], b: list[float]) -> float | None:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def run_active_learning(config: ActiveConfig, log: Callable[[str], None] = lambda m: None) -> dict:
    repo = ModelRepository(config.repo)
    model = AcquisitionModel.from_repository(repo, config.model, runtime=config.runtime)
    manifest = model.manifest
    dataset = Dataset.open(config.data, binary=config.binary)
    if dataset.n_classes != manifest.n_classes:
        raise ManifestError(f"model {manifest.name}:{manifest.version} has {manifest.n_classes} classes but "
                            f"{dataset.name} has {dataset.n_classes}; use --binary CLASS for a one-against-rest view")
    dataset, split_note = select_images(dataset, manifest, config.split, config.binary)
    if config.limit:
        dataset = dataset.subset([s.name for s in dataset.samples[: config.limit]])
    unknown = [s for s in config.strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; known: {sorted(STRATEGIES)}")
    disca = DiscaSettings(variant=config.variant, learning_rate=config.learning_rate,
                          recall_weight=config.recall_weight, seed=config.adapt_seed).for_model(manifest).validate()
    images = list(dataset)
    n, k_max = manifest.n_classes, config.patches
    reports: dict[str, dict] = {}
    for name in config.strategies:
        strategy = get_strategy(name, seed=config.seed) if name == "random" else get_strategy(name)
        refiner = _make_refiner(config, model.predictor, repo, disca)
        cms = np.zeros((k_max + 1, n, n), dtype=np.int64)
        rank_seconds, estimated, true_cost, clicks_made = [], [], [], 0
        per_image: dict[str, list[float]] = {}
        per_image_patches: dict[str, list[list[int]]] = {}
        try:
            for index, (sample, image, truth) in enumerate(images):
                annotator = SimulatedAnnotator(n_classes=n, seed=config.seed + index)
                prediction = refiner.start(image)
                cm = confusion_matrix(prediction, truth, n)
                cms[0] += cm
                curve = [float(mean_iou(cm))]
                ranked, annotated, seconds = [], [], 0.0
                for k in range(k_max):
                    if k == 0 or config.rescore:
                        # First the click-free model; when re-ranking, then the refiner's as it now predicts.
                        started = time.perf_counter()
                        scorer = refiner.acquisition_model(model) if k else model
                        result = strategy.compute(scorer, image, refiner.clicks if k else ())
                        ranked += rank_patches(strategy, result, patch_px=config.patch_px,
                                               reduction=config.reduction, cost_weighting=config.cost_weighting,
                                               exclude=annotated, max_patches=1 if config.rescore else k_max)
                        seconds += time.perf_counter() - started
                    if k < len(ranked):
                        patch = ranked[k]
                        annotated.append(patch.window)
                        r, c, h, w = patch.window
                        estimated.append(patch.estimated_click_cost)
                        true_cost.append(float(click_cost(truth[r: r + h, c: c + w]).total))
                        click = annotator.next_click(prediction, truth, region=patch.window)
                        if click is not None:
                            prediction = refiner.add_click(click)
                            clicks_made += 1
                    cm = confusion_matrix(prediction, truth, n)
                    cms[k + 1] += cm
                    curve.append(float(mean_iou(cm)))
                # Where a dataset-level change comes from, and what a paired comparison of
                # two strategies (image by image) needs: the image's own mIoU curve.
                per_image[sample.name] = curve
                per_image_patches[sample.name] = [list(w) for w in annotated]
                rank_seconds.append(seconds)
                log(f"{name} [{index + 1}/{len(images)}] {sample.name}: {len(ranked)} patches, "
                    f"rank {rank_seconds[-1]:.2f} s")
        except HeadMissing as error:
            reports[name] = {"strategy": name, "skipped": str(error)}
            log(f"{name}: skipped ({error})")
            continue
        miou = [float(mean_iou(cm)) for cm in cms]
        reports[name] = {
            "strategy": name,
            "miou": miou,
            "auc": float(np.mean(miou)),
            "seconds_rank": float(np.sum(rank_seconds)),
            "seconds_rank_per_image": float(np.mean(rank_seconds)),
            "clicks_made": clicks_made,
            "per_image_miou": per_image,
            "per_image_patches": per_image_patches,
            "click_cost": {
                "estimated_per_patch": float(np.mean(estimated)) if estimated else None,
                "true_per_patch": float(np.mean(true_cost)) if true_cost else None,
                "pearson": _pearson(estimated, true_cost),
                "patches": len(estimated),
            },
        }
        log(f"{name}: mIoU {miou[0]:.4f} -> {miou[-1]:.4f}, auc {reports[name]['auc']:.4f}")
    # AC never adapts, so its report leaves the adaptation settings empty rather than quoting unused ones.
    adaptation = {"variant": config.variant, "learning_rate": disca.learning_rate,
                  "recall_weight": disca.recall_weight, "adapt_seed": disca.seed}
    common = {
        "model": f"{manifest.name}:{manifest.version}", "dataset": dataset.name, "binary_class": config.binary,
        "split": split_note, "images": [s.name for s, _, _ in images], "mode": config.mode,
        "patches_per_image": k_max, "patch_px": config.patch_px, "reduction": config.reduction, "seed": config.seed,
        "cost_weighting": config.cost_weighting, "rescore": config.rescore,
        "runtime": getattr(model.predictor, "provider", config.runtime),
    } | {key: (value if config.mode != "ac" else None) for key, value in adaptation.items()}
    if len(config.strategies) == 1:
        return common | reports[config.strategies[0]]
    return common | {"strategies": reports}
