"""``dial train``: train a click-aware network and write a new model version.

The recipe follows DISIR (random crops, flips, simulated clicks with class
balancing, ~30 % click-free samples), adapted to CPU-sized budgets: AdamW
with a one-cycle schedule converges in far fewer iterations than the
paper's 50 epochs of SGD, and a soft-Dice term keeps rare classes from
being drowned by the dominant one (mIoU weighs every class equally).
"""
from __future__ import annotations

import json
import logging
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from dial.clicks import ClickEncoding
from dial.files import atomic_path
from dial.imagery.dataset import Dataset, split_names
from dial.imagery.legend import IGNORE_INDEX
from dial.inference.inputs import network_input
from dial.inference.predictors import TorchPredictor
from dial.inference.tiling import predict_labels
from dial.model.manifest import BandNorm, Manifest, ModelClass
from dial.model.network import CLICK_FUSION, build_network, split_architecture
from dial.model.repository import ModelRepository, check_name
from dial.inference.superpixels import slic_segments
from dial.training.click_sampling import sample_training_clicks
from dial.training.label_swaps import swap_labels

log = logging.getLogger(__name__)

# Flags that may differ when resuming: they change how long or how fast
# training runs, not what it learns from.
RESUMABLE_CHANGES = {"resume", "iterations", "checkpoint_every", "threads", "bfloat16"}
# Superpixels for label swaps are larger than the baseline's: a swap should
# cover a field-sized part of the crop, not a 50 px patch.
SWAP_SUPERPIXEL_PX = 10_000
FUSION_LR_FACTOR = 10.0
FUSION_PARAMETERS = ("fusion.", "click_logits.")
DEFAULT_BAND_NAMES = {1: ("grey",), 3: ("red", "green", "blue"), 4: ("red", "green", "blue", "nir")}


@dataclass(frozen=True)
class TrainConfig:
    data: str
    name: str
    repo: str = "models"
    binary: str | None = None
    class_names: tuple[str, ...] | None = None
    architecture: str = "Linknet"
    encoder: str = "mobilenet_v2"
    crop_px: int = 256
    batch_size: int = 8
    iterations: int = 2000
    learning_rate: float = 2e-3
    # None: FUSION_LR_FACTOR x learning_rate. Set apart so that a fine-tuned
    # base can move slowly (keeping its click-free accuracy) while the fusion
    # path, which starts at zero, learns at its own rate.
    fusion_learning_rate: float | None = None
    weight_decay: float = 1e-4
    dice_weight: float = 0.5
    max_clicks: int = 20
    p_no_clicks: float = 0.3
    # None: the base model's click encoding when fine-tuning, else a 10 px cone.
    radius_px: float | None = None
    val_fraction: float = 0.25
    split_seed: int = 0
    seed: int = 0
    workdir: str = ".checkpoints"
    checkpoint_every: int = 100
    resume: bool = False
    threads: int = 0
    tile_px: int = 512
    overlap_px: int = 128
    max_train_images: int | None = None
    init_from: str | None = None
    error_click_fraction: float = 0.0
    error_click_rounds: int = 3
    label_swap_fraction: float = 0.0
    bfloat16: bool = False
    # Train only the click-fusion path: the base network keeps its weights and
    # its batch-norm statistics (eval mode), so the click-free map stays the
    # base's exactly and the fusion learns on the features it will serve on.
    freeze_base: bool = False

    def validate(self) -> None:
        check_name(self.name)
        if self.crop_px % 32:
            raise ValueError(f"crop_px {self.crop_px} must be a multiple of 32")
        if not 0 < self.val_fraction < 1:
            raise ValueError("val_fraction must be in (0, 1)")
        if self.iterations < 1 or self.batch_size < 1 or self.max_clicks < 1:
            raise ValueError("iterations, batch_size and max_clicks must be >= 1")
        if not self.learning_rate > 0 or (self.fusion_learning_rate is not None
                                          and not self.fusion_learning_rate > 0):
            raise ValueError("learning rates must be > 0")
        if self.fusion_learning_rate is not None and CLICK_FUSION not in self.architecture:
            raise ValueError(f"fusion_learning_rate needs a +{CLICK_FUSION} architecture, "
                             f"got {self.architecture}")
        if self.freeze_base and CLICK_FUSION not in self.architecture:
            raise ValueError(f"freeze_base trains only the click fusion and needs a +{CLICK_FUSION} "
                             f"architecture, got {self.architecture}")
        if self.freeze_base and not self.init_from:
            raise ValueError("freeze_base keeps a trained base network; name it with init_from")
        if self.radius_px is not None and not self.radius_px > 0:
            raise ValueError(f"radius_px must be > 0, got {self.radius_px}")
        for name in ("label_swap_fraction", "error_click_fraction", "p_no_clicks"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.p_no_clicks + self.label_swap_fraction > 1:
            raise ValueError(f"p_no_clicks {self.p_no_clicks} and label_swap_fraction "
                             f"{self.label_swap_fraction} must add up to at most 1")


@dataclass
class TrainResult:
    manifest: Manifest
    seconds: float
    validation: dict = field(default_factory=dict)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, n_classes: int) -> torch.Tensor:
    valid = (target != IGNORE_INDEX).unsqueeze(1).float()
    probs = logits.softmax(dim=1) * valid
    onehot = F.one_hot(target.clamp(max=n_classes - 1), n_classes).permute(0, 3, 1, 2).float() * valid
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    union = probs.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    dice = (2 * inter + 1.0) / (union + 1.0)
    return (1 - dice[present]).mean() if present.any() else logits.sum() * 0


def band_statistics(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.concatenate([im.reshape(-1, im.shape[-1]).astype(np.float64) for im in images])
    return stacked.mean(axis=0), np.maximum(stacked.std(axis=0), 1e-3)


class CropSampler:
    """Random crops with flips and quarter turns, plus simulated clicks."""

    def __init__(self, images, masks, manifest: Manifest, config: TrainConfig, rng: np.random.Generator):
        self.images, self.masks, self.manifest, self.config, self.rng = images, masks, manifest, config, rng
        areas = np.array([m.size for m in masks], dtype=np.float64)
        self.p = areas / areas.sum()

    def _crop(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = self.config.crop_px
        h, w = mask.shape
        if h < size or w < size:
            ph, pw = max(size - h, 0), max(size - w, 0)
            image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect")
            mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
            h, w = mask.shape
        r = int(self.rng.integers(0, h - size + 1))
        c = int(self.rng.integers(0, w - size + 1))
        image, mask = image[r : r + size, c : c + size], mask[r : r + size, c : c + size]
        if self.rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if self.rng.random() < 0.5:
            image, mask = image[::-1], mask[::-1]
        k = int(self.rng.integers(0, 4))
        return np.ascontiguousarray(np.rot90(image, k)), np.ascontiguousarray(np.rot90(mask, k))

    def batch(self, model: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        crops, masks, clicks, corrected = [], [], [], []
        for _ in range(self.config.batch_size):
            i = int(self.rng.choice(len(self.images), p=self.p))
            image, mask = self._crop(self.images[i], self.masks[i])
            # Swaps come out of the clicked share: the click-free share, with the
            # true target, is what keeps the click-free map as good as before.
            draw = self.rng.random()
            if draw < self.config.p_no_clicks:
                sampled = []
            elif draw < self.config.p_no_clicks + self.config.label_swap_fraction:
                mask, sampled = self._swap(image, mask)
            else:
                sampled = sample_training_clicks(mask, self.rng, self.manifest.n_classes,
                                                 max_clicks=self.config.max_clicks, p_no_clicks=0.0)
            crops.append(image)
            masks.append(mask)
            clicks.append(sampled)
            corrected.append(bool(sampled) and self.rng.random() < self.config.error_click_fraction)
        if model is not None and any(corrected):
            self._add_error_clicks(model, crops, masks, clicks, corrected)
        xs = [network_input(image, c, self.manifest) for image, c in zip(crops, clicks)]
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(masks).astype(np.int64))

    def _swap(self, image: np.ndarray, mask: np.ndarray):
        """A label swap over ground-truth components or, half the time, superpixels of one class.

        Components teach a click to take a whole field; superpixels, to take
        the part of a region that the image delimits, as a field in a larger
        component of one class would be.
        """
        segments = None
        if self.rng.random() < 0.5:
            segments = slic_segments(image, region_px=SWAP_SUPERPIXEL_PX)
        return swap_labels(mask, self.rng, self.manifest.n_classes, segments=segments)

    def _add_error_clicks(self, model, crops, masks, clicks, corrected) -> None:
        """RITM's iterative sampling: clicks where the model's own map is wrong.

        Random ground-truth clicks mostly land where the map is already
        right, so the network learns little about overriding itself; the
        simulated annotator at evaluation clicks only into errors. A few
        rounds of "predict, click the largest error" close that gap.
        """
        from dial.annotator import SimulatedAnnotator

        chosen = [k for k, flag in enumerate(corrected) if flag]
        rounds = int(self.rng.integers(1, self.config.error_click_rounds + 1))
        was_training = model.training
        model.eval()
        try:
            for _ in range(rounds):
                x = np.stack([network_input(crops[k], clicks[k], self.manifest) for k in chosen])
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.bfloat16):
                    predictions = model(torch.from_numpy(x)).argmax(dim=1).numpy().astype(np.uint8)
                for k, prediction in zip(chosen, predictions):
                    annotator = SimulatedAnnotator(self.manifest.n_classes, random_top_k=3,
                                                   seed=int(self.rng.integers(1 << 31)))
                    click = annotator.next_click(prediction, masks[k])
                    if click is not None:
                        clicks[k].append(click)
        finally:
            set_training(model, was_training, self.config.freeze_base)


def set_training(model: torch.nn.Module, training: bool, freeze_base: bool) -> None:
    """Training mode for what is trained; a frozen base stays in eval mode (batch-norm statistics fixed)."""
    model.train(training)
    if freeze_base:
        model.net.eval()


def evaluate_no_clicks(model: torch.nn.Module, manifest: Manifest, dataset: Dataset) -> dict:
    from dial.metrics import confusion_matrix, iou_per_class, mean_iou

    predictor = TorchPredictor(model, manifest)
    cm = np.zeros((manifest.n_classes, manifest.n_classes), dtype=np.int64)
    for _, image, mask in dataset:
        cm += confusion_matrix(predict_labels(predictor, image), mask, manifest.n_classes)
    ious = iou_per_class(cm)
    return {
        "miou_no_clicks": float(mean_iou(cm)),
        "per_class_iou_no_clicks": {n: (None if np.isnan(v) else float(v)) for n, v in zip(manifest.class_names, ious)},
        "images": len(dataset),
    }


def train(config: TrainConfig, progress: Callable | None = None, command: str | None = None) -> TrainResult:
    config.validate()
    start = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    dataset = Dataset.open(config.data, binary=config.binary)
    names = [s.name for s in dataset.samples]
    train_names, val_names = split_names(names, config.val_fraction, config.split_seed)
    if config.max_train_images:
        train_names = train_names[: config.max_train_images]
    train_set, val_set = dataset.subset(train_names), dataset.subset(val_names)
    images, masks = [], []
    for _, image, mask in train_set:
        images.append(image)
        masks.append(mask)
    dtypes = {im.dtype.name for im in images}
    bands = {im.shape[-1] for im in images}
    if len(dtypes) != 1 or len(bands) != 1:
        raise ValueError(f"training images mix dtypes {dtypes} or band counts {bands}")
    mean, std = band_statistics(images)
    n_bands = bands.pop()
    base = None
    if config.init_from:
        base_model, base = ModelRepository(config.repo).load_torch(config.init_from)
        # Fine-tuning keeps the base's input contract: its normalisation (and its click encoding
        # unless radius_px asks for a new footprint, which the manifest then records).
        mean = np.array([b.mean for b in base.bands])
        std = np.array([b.std for b in base.bands])
        if base.n_bands != n_bands or base.n_classes != dataset.n_classes:
            raise ValueError(f"{config.init_from} takes {base.n_bands} bands and {base.n_classes} classes; "
                             f"the data has {n_bands} bands and {dataset.n_classes} classes")
    class_names = config.class_names or dataset.class_names
    if len(class_names) != dataset.n_classes:
        raise ValueError(f"{len(class_names)} class names given for {dataset.n_classes} classes")
    colours = [c.hex for c in dataset.legend.classes] if not config.binary and dataset.legend.classes else []
    if len(colours) != len(class_names):
        colours = ["#000000", "#FFFFFF"] if len(class_names) == 2 else [
            "#{:06X}".format((i * 0x3C6EF3) & 0xFFFFFF) for i in range(len(class_names))]

    repo = ModelRepository(config.repo)
    manifest = Manifest(
        name=config.name,
        version=repo.next_version(config.name),
        architecture=config.architecture,
        encoder=config.encoder,
        classes=tuple(ModelClass(n, c) for n, c in zip(class_names, colours)),
        bands=tuple(BandNorm(n, float(m), float(s)) for n, m, s in
                    zip(DEFAULT_BAND_NAMES[n_bands], mean, std)),
        input_dtype=dtypes.pop(),
        click_encoding=(ClickEncoding(radius_px=config.radius_px) if config.radius_px is not None
                        else base.click_encoding if base else ClickEncoding()),
        tile_px=config.tile_px,
        overlap_px=config.overlap_px,
    )
    manifest.validate("new model")

    if base is not None:
        smp_class, fusion_option = split_architecture(config.architecture)
        adds_fusion = fusion_option is not None and smp_class == base.architecture
        if (base.encoder != config.encoder
                or (base.architecture != config.architecture and not adds_fusion)):
            raise ValueError(f"{config.init_from} is {base.architecture}/{base.encoder}; pass the same "
                             f"--architecture (or {base.architecture}+{CLICK_FUSION}) and --encoder "
                             "to fine-tune it")
        if adds_fusion:
            # The base network becomes the fused one's inner network; the fusion
            # starts at zero, so training begins from the base's own predictions.
            model = build_network(config.architecture, config.encoder, manifest.in_channels, manifest.n_classes)
            model.net.load_state_dict(base_model.state_dict())
            model.train()
        else:
            model = base_model.train()
    else:
        model = build_network(config.architecture, config.encoder, manifest.in_channels, manifest.n_classes)
    base_parameters = [p for n, p in model.named_parameters() if not n.startswith(FUSION_PARAMETERS)]
    fusion = [p for n, p in model.named_parameters() if n.startswith(FUSION_PARAMETERS)]
    if config.freeze_base:
        # No gradient through the base either: a frozen base is also a cheaper step.
        for parameter in base_parameters:
            parameter.requires_grad_(False)
    groups = [] if config.freeze_base else [{"params": base_parameters, "lr": config.learning_rate}]
    if fusion:
        # The click fusion starts at zero on top of a trained network; at the
        # network's fine-tuning rate it would barely move in a CPU budget.
        groups.append({"params": fusion, "lr": config.fusion_learning_rate
                       or config.learning_rate * FUSION_LR_FACTOR})
    optimiser = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=[g["lr"] for g in groups],
                                                    total_steps=config.iterations, pct_start=0.1)
    workdir = Path(config.workdir) / config.name
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = workdir / "checkpoint.pt"
    first = 0
    resumes: list[dict] = []
    if config.resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        changed = {k for k, v in asdict(config).items() if state["config"].get(k) != v} - RESUMABLE_CHANGES
        if changed:
            raise ValueError(f"{checkpoint_path} was written with different {sorted(changed)}; "
                             "start afresh without --resume or use the same flags")
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        first = state["iteration"]
        resumes = state.get("resumes", []) + [
            {"iteration": first, "previous_iterations": state["config"]["iterations"]}]
        if state["config"]["iterations"] == config.iterations:
            scheduler.load_state_dict(state["scheduler"])
        else:
            # A new budget re-times the one-cycle schedule from where training is.
            scheduler.last_epoch = first - 1
            scheduler.step()
        log.info("resumed %s at iteration %d", checkpoint_path, first)

    sampler = CropSampler(images, masks, manifest, config, rng)
    set_training(model, True, config.freeze_base)
    losses: list[float] = []
    for iteration in range(first, config.iterations):
        x, y = sampler.batch(model if config.error_click_fraction > 0 else None)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bfloat16):
            logits = model(x)
        logits = logits.float()
        loss = F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX)
        if config.dice_weight:
            loss = loss + config.dice_weight * dice_loss(logits, y, manifest.n_classes)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(iteration + 1, config.iterations, float(np.mean(losses[-20:])))
        if (iteration + 1) % config.checkpoint_every == 0 or iteration + 1 == config.iterations:
            with atomic_path(checkpoint_path) as tmp:
                torch.save({
                    "config": asdict(config), "model": model.state_dict(), "optimiser": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "iteration": iteration + 1, "resumes": resumes,
                }, tmp)

    model.eval()
    validation = evaluate_no_clicks(model, manifest, val_set)
    seconds = time.perf_counter() - start
    training = {
        "command": command or " ".join(sys.argv),
        "dataset": Path(config.data).name,
        "binary_class": config.binary,
        "split": {"method": "per-group seeded hash", "val_fraction": config.val_fraction,
                  "seed": config.split_seed, "train": train_names, "val": val_names},
        "config": {k: v for k, v in asdict(config).items() if k not in ("resume", "workdir", "repo")},
        "resumes": resumes,
        "initialised_from": f"{base.name}:{base.version}" if base else None,
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "seconds": round(seconds, 1),
        "torch": torch.__version__,
        "validation": validation,
    }
    manifest = Manifest.from_dict({**manifest.to_dict(), "training": json.loads(json.dumps(training))})
    saved = repo.save(model, manifest)
    return TrainResult(manifest=saved, seconds=seconds, validation=validation)
