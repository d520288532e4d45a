"""Image/mask pair datasets in DIAL's folder layout, binary views and splits.

Layout: ``images/<name>.<ext>``, ``masks/<name>.<ext>`` with the same base
name, and ``legend.json`` for colour masks. Without a legend the masks are
read as binary value masks (0 / 255).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dial.imagery.legend import IGNORE_INDEX, Legend
from dial.imagery.readers import read_image, read_mask

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Sample:
    name: str
    image_path: Path
    mask_path: Path


def group_of(name: str) -> str:
    """The acquisition group of a sample: its name up to the first ``_``.

    Parts of one scene share a prefix (``tile4_image_part_002``, ``austin1_12``);
    splits are stratified by it so that every group is seen in validation.
    """
    return re.split(r"[_]", name, maxsplit=1)[0]


@dataclass
class Dataset:
    root: Path
    legend: Legend
    samples: list[Sample]
    ignore_value: int | None = None
    binary_class: str | None = None
    _binary_index: int | None = field(default=None, repr=False)

    @classmethod
    def open(cls, root: str | Path, *, binary: str | None = None, ignore_value: int | None = None) -> "Dataset":
        root = Path(root)
        image_dir, mask_dir = root / "images", root / "masks"
        if not image_dir.is_dir() or not mask_dir.is_dir():
            raise FileNotFoundError(f"{root} must contain images/ and masks/ folders")
        masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        samples = []
        for image in sorted(image_dir.iterdir()):
            if image.suffix.lower() in IMAGE_SUFFIXES and image.stem in masks:
                samples.append(Sample(image.stem, image, masks[image.stem]))
        if not samples:
            raise FileNotFoundError(f"{root}: no image/mask pairs with matching names")
        legend_path = root / "legend.json"
        legend = Legend.load(legend_path) if legend_path.exists() else Legend.binary("foreground")
        dataset = cls(root=root, legend=legend, samples=samples, ignore_value=ignore_value)
        return dataset.binary_view(binary) if binary else dataset

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def class_names(self) -> tuple[str, ...]:
        if self.binary_class is not None:
            return (f"not {self.binary_class}", self.binary_class)
        return self.legend.names

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def binary_view(self, class_name: str) -> "Dataset":
        """One named class against the rest; ignore pixels stay ignored."""
        index = self.legend.index_of(class_name)
        return Dataset(
            root=self.root,
            legend=self.legend,
            samples=self.samples,
            ignore_value=self.ignore_value,
            binary_class=class_name,
            _binary_index=index,
        )

    def subset(self, names: list[str] | tuple[str, ...]) -> "Dataset":
        by_name = {s.name: s for s in self.samples}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise KeyError(f"{self.root}: no samples named {missing[:5]}")
        return Dataset(self.root, self.legend, [by_name[n] for n in names], self.ignore_value,
                       self.binary_class, self._binary_index)

    def read(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        image, _ = read_image(sample.image_path)
        mask = read_mask(sample.mask_path, self.legend, self.ignore_value)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{sample.name}: image {image.shape[:2]} and mask {mask.shape} differ in size")
        if self._binary_index is not None:
            binary = (mask == self._binary_index).astype(np.uint8)
            binary[mask == IGNORE_INDEX] = IGNORE_INDEX
            mask = binary
        return image, mask

    def __iter__(self):
        for sample in self.samples:
            image, mask = self.read(sample)
            yield sample, image, mask

    def __len__(self) -> int:
        return len(self.samples)


def split_names(names: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic train/validation split, stratified by :func:`group_of`.

    Each group contributes ``round(len * val_fraction)`` validation samples
    (at least one when it has two or more), chosen by a seeded hash so the
    split does not depend on file-system order.
    """
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(group_of(name), []).append(name)
    train, val = [], []
    for members in groups.values():
        ranked = sorted(members, key=lambda n: hashlib.sha256(f"{seed}:{n}".encode()).hexdigest())
        n_val = int(round(len(ranked) * val_fraction))
        if len(ranked) >= 2:
            n_val = max(1, n_val)
        val += ranked[:n_val]
        train += ranked[n_val:]
    return sorted(train), sorted(val)
