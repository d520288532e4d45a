"""The on-disk model repository: ``<root>/<name>/<version>/``.

Each version directory holds ``manifest.json``, the torch weights, and an
ONNX export. The ONNX file is derived data: it is built on first load when
absent (written next to the weights, or into a cache directory when the
repository is mounted read-only), so git only carries the weights.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from dial.model.manifest import Manifest, ManifestError
from dial.model.network import build_network
from dial.model.onnx_export import export_onnx

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class ModelNotFound(LookupError):
    """No model, or no such version, in the repository."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "ModelRef":
        name, _, version = spec.partition(":")
        return cls(name, version or None)

    def __str__(self) -> str:
        return f"{self.name}:{self.version}" if self.version else self.name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"model name {name!r} must match {_NAME.pattern}")
    return name


class ModelRepository:
    def __init__(self, root: str | Path, cache_dir: str | Path | None = None):
        self.root = Path(root)
        self.cache_dir = Path(cache_dir) if cache_dir else None

    # -- discovery ---------------------------------------------------------
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        directory = self.root / name
        if not directory.is_dir():
            return []
        found = [p.name for p in directory.iterdir() if p.is_dir() and p.name.isdigit()
                 and (p / "manifest.json").exists()]
        return sorted(found, key=int)

    def resolve(self, ref: ModelRef | str) -> tuple[str, str]:
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        versions = self.versions(ref.name)
        if not versions:
            raise ModelNotFound(f"model {ref.name!r} is not in the repository (models: {self.names()})")
        if ref.version is None:
            return ref.name, versions[-1]
        if ref.version not in versions:
            raise ModelNotFound(f"model {ref.name!r} has no version {ref.version!r} (versions: {versions})")
        return ref.name, ref.version

    def path(self, ref: ModelRef | str) -> Path:
        name, version = self.resolve(ref)
        return self.root / name / version

    # -- loading -----------------------------------------------------------
    def manifest(self, ref: ModelRef | str) -> Manifest:
        directory = self.path(ref)
        manifest = Manifest.load(directory)
        name, version = self.resolve(ref)
        if (manifest.name, manifest.version) != (name, version):
            raise ManifestError(
                f"{directory}: manifest names {manifest.name}:{manifest.version} but lives at {name}/{version}"
            )
        return manifest

    def load_torch(self, ref: ModelRef | str) -> tuple[torch.nn.Module, Manifest]:
        manifest = self.manifest(ref)
        directory = self.path(ref)
        weights = directory / manifest.weights_file
        if not weights.exists():
            raise ManifestError(f"{directory}: weights file {manifest.weights_file} is missing")
        if manifest.weights_sha256 and sha256_of(weights) != manifest.weights_sha256:
            raise ManifestError(f"{weights}: checksum does not match the manifest (corrupt or replaced file)")
        model = build_network(manifest.architecture, manifest.encoder, manifest.in_channels, manifest.n_classes)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict({k: v.float() for k, v in state.items()})
        except Exception as error:  # noqa: BLE001 - any load failure means the same to a user
            raise ManifestError(
                f"{weights}: weights do not fit {manifest.architecture}/{manifest.encoder} with "
                f"{manifest.in_channels} input channels and {manifest.n_classes} classes ({error})"
            ) from None
        return model.eval(), manifest

    def onnx_path(self, ref: ModelRef | str) -> Path:
        """The ONNX export for a version, building it on first use."""
        manifest = self.manifest(ref)
        directory = self.path(ref)
        candidates = [directory / manifest.onnx_file]
        if self.cache_dir is not None:
            candidates.append(self.cache_dir / manifest.name / manifest.version / manifest.onnx_file)
        stamp = manifest.weights_sha256[:16]
        for candidate in candidates:
            marker = candidate.with_name(candidate.name + ".sha256")
            if candidate.exists() and (not stamp or (marker.exists() and marker.read_text().strip() == stamp)):
                return candidate
        model, manifest = self.load_torch(ref)
        for candidate in candidates:
            try:
                candidate.parent.mkdir(parents=True, exist_ok=True)
                export_onnx(model, manifest.in_channels, candidate)
                candidate.with_name(candidate.name + ".sha256").write_text(stamp + "\n")
                return candidate
            except OSError:
                continue
        raise ManifestError(
            f"{directory}: cannot write the ONNX export (read-only repository and no writable cache dir)"
        )

    # -- writing -----------------------------------------------------------
    def next_version(self, name: str) -> str:
        versions = self.versions(check_name(name))
        return str(int(versions[-1]) + 1) if versions else "1"

    def save(self, model: torch.nn.Module, manifest: Manifest, *, export: bool = True) -> Manifest:
        """Write a new version atomically (a temporary directory, then a rename)."""
        check_name(manifest.name)
        target = self.root / manifest.name / manifest.version
        if target.exists():
            raise FileExistsError(f"{target} already exists; versions are immutable")
        staging = self.root / manifest.name / f".staging-{manifest.version}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            weights = staging / manifest.weights_file
            torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, weights)
            final = Manifest.from_dict({**manifest.to_dict(), "weights_sha256": sha256_of(weights)})
            final.save(staging)
            if export:
                export_onnx(model, final.in_channels, staging / final.onnx_file)
                (staging / (final.onnx_file + ".sha256")).write_text(final.weights_sha256[:16] + "\n")
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final
