"""What a strategy needs from a model: probabilities, the torch network, learned heads.

Probability-based strategies use whichever predictor serves plain
predictions (ONNX Runtime in the services), so their maps come from the very
probabilities a prediction computes. Strategies that need dropout, input
gradients or intermediate features use the torch network. Learned heads
(ConfidNet, MetaSeg) live next to the weights in the model's repository
entry and are listed in a side manifest, ``acquisition.json``, so the main
``manifest.json`` (and its checksum discipline) is never touched.
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from dial.files import atomic_write_text
from dial.inference.predictors import Predictor, TorchPredictor
from dial.model.manifest import Manifest, ManifestError
from dial.model.repository import ModelRef, ModelRepository

SIDE_MANIFEST = "acquisition.json"


class HeadMissing(ManifestError):
    """A strategy needs a learned head that this model version does not have."""


def read_side_manifest(directory: Path) -> dict:
    path = Path(directory) / SIDE_MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ManifestError(f"{path}: not valid JSON ({error})") from None


def record_head(directory: Path, kind: str, entry: dict) -> None:
    """Add or replace one head's entry in the side manifest, atomically."""
    directory = Path(directory)
    data = read_side_manifest(directory)
    data[kind] = entry
    atomic_write_text(directory / SIDE_MANIFEST, json.dumps(data, indent=2) + "\n")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _for_inference(network: torch.nn.Module) -> torch.nn.Module:
    # channels_last makes the torch strategies' convolutions (oneDNN on CPU)
    # about 1.4x faster for the LinkNets; outputs do not change.
    return network.eval().to(memory_format=torch.channels_last)


@dataclass
class AcquisitionModel:
    manifest: Manifest
    predictor: Predictor
    network: torch.nn.Module | None = None
    directory: Path | None = None
    _heads: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_network(cls, network: torch.nn.Module, manifest: Manifest, directory: Path | None = None):
        network = _for_inference(network)
        return cls(manifest, TorchPredictor(network, manifest), network, directory)

    @classmethod
    def from_repository(cls, repo: ModelRepository, ref: ModelRef | str, runtime: str = "onnx"):
        network, manifest = repo.load_torch(ref)
        network = _for_inference(network)
        if runtime == "onnx":
            from dial.inference.predictors import OnnxPredictor

            predictor = OnnxPredictor(repo.onnx_path(ref), manifest, provider="cpu")
        else:
            predictor = TorchPredictor(network, manifest)
        return cls(manifest, predictor, network, repo.path(ref))

    def with_network(self, network: torch.nn.Module) -> "AcquisitionModel":
        """The same model and learned heads with other weights, such as a DISCA-adapted copy.

        Its predictions run in torch: an ONNX export holds the weights it was built from.
        """
        return replace(self, predictor=TorchPredictor(network, self.manifest), network=network)

    def torch_network(self) -> torch.nn.Module:
        if self.network is None:
            raise ManifestError(f"model {self.manifest.name}:{self.manifest.version} has no torch network loaded")
        return self.network

    def has_head(self, kind: str) -> bool:
        with self._lock:
            if kind in self._heads:
                return True
        return bool(self.directory and read_side_manifest(self.directory).get(kind))

    def head(self, kind: str, loader):
        """A learned head, loaded once; ``loader(path, entry)`` builds it from its file."""
        with self._lock:
            if kind not in self._heads:
                entry = read_side_manifest(self.directory).get(kind) if self.directory else None
                if not entry:
                    raise HeadMissing(
                        f"model {self.manifest.name}:{self.manifest.version} has no {kind} head; "
                        f"train one with `dial train-{kind}`"
                    )
                path = self.directory / entry["file"]
                if entry.get("sha256") and file_sha256(path) != entry["sha256"]:
                    raise ManifestError(f"{path}: checksum does not match {SIDE_MANIFEST}")
                self._heads[kind] = loader(path, entry)
            return self._heads[kind]

    def set_head(self, kind: str, head) -> None:
        """Use an in-memory head (freshly trained, or a test's) instead of the stored one."""
        with self._lock:
            self._heads[kind] = head
