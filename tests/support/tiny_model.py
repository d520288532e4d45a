"""The tiny model that the tests' fixtures and the reliability harness serve.

It is trained by the real ``dial train`` code path, so every test that serves
it runs against a genuine repository entry (weights, manifest, ONNX export).
"""
from __future__ import annotations

from pathlib import Path


def make_tiny_scenes(folder: Path) -> Path:
    """Eight 128 px synthetic scenes, the data of :func:`train_tiny_model`."""
    from tests.support.synthetic import make_dataset

    make_dataset(folder, 8, size=128, seed=1)
    return folder


def train_tiny_model(scenes: Path, repo: Path, work: Path, command: str) -> str:
    """Train ``tiny:1``, a briefly trained 6-class model (tile 128), into ``repo``; returns its name."""
    from dial.training.trainer import TrainConfig, train

    train(TrainConfig(data=str(scenes), name="tiny", repo=str(repo), crop_px=64, batch_size=2, iterations=6,
                      checkpoint_every=3, workdir=str(work), radius_px=5.0, tile_px=128, overlap_px=32),
          command=command)
    return "tiny"


def train_tiny(folder: Path) -> tuple[Path, str]:
    """:func:`train_tiny_model` on fresh scenes under ``folder``: (repository, name)."""
    repo = folder / "models"
    return repo, train_tiny_model(make_tiny_scenes(folder / "scenes"), repo, folder / "work", "reliability harness")
