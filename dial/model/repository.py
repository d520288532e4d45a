"""The on-disk model repository: ``<root>/<name>/<version>/``.

Each version directory holds ``manifest.json``, the torch weights, and an
ONNX export. The ONNX file is derived data: it is built on first load when
absent (written next to the weights, or into a cache directory when the
repository is mounted read-only), so git only carries the weights.

Names and versions reach this module from callers, and manifests may be
written by anyone who can write the repository, so every path is built from
a checked name and version, and every file a manifest names must stay inside
its version directory. Entries that cannot be read are skipped and logged,
so one bad folder never hides the others.

A version written by ``save(..., exported_by=...)`` (an Adapter session's
export) carries an ``exported.json`` mark. An unpinned reference ("latest")
never resolves to a marked version, so one caller's export cannot become
every caller's default; ``promote`` (an operator's decision) turns the mark
into ``promoted.json`` and the version into a candidate for latest.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dial.errors import AlreadyExists, NotFound
from dial.files import atomic_write_text
from dial.model.manifest import Manifest, ManifestError
from dial.model.network import build_network
from dial.model.onnx_export import export_onnx

log = logging.getLogger(__name__)

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
# ASCII digits only (str.isdigit() also takes "²" and "٣", which int() or sorting
# then reject), no leading zero so "3" and "03" cannot both exist, and short
# enough that a version is always a valid folder name and a sortable int.
_VERSION = re.compile(r"0|[1-9][0-9]{0,8}")
EXPORT_MARK = "exported.json"
PROMOTED_MARK = "promoted.json"


class ModelNotFound(NotFound):
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


def _shown(value: str, limit: int = 40) -> str:
    """``value`` for a message: quoted, and cut short so a huge value cannot swell the reply."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def check_name(name: str) -> str:
    """The one rule for model names, wherever one comes from (a request, a folder, a training run)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"model name {_shown(name)} must be 1 to 63 characters of a-z, 0-9, '_', '.' and '-', "
                         "starting with a letter or digit")
    return name


def check_version(version: str) -> str:
    """The one rule for model versions: a decimal number in ASCII digits, e.g. "3"."""
    if not _VERSION.fullmatch(version):
        raise ValueError(f"model version {_shown(version)} must be a number of 1 to 9 ASCII digits "
                         "without a leading zero, e.g. \"3\"")
    return version


def check_ref(ref: ModelRef) -> ModelRef:
    check_name(ref.name)
    if ref.version is not None:
        check_version(ref.version)
    return ref


def _inside(directory: Path, file_name: str) -> bool:
    """Whether ``directory/file_name``, following any symlink, stays in ``directory``.

    Manifest validation already allows only plain file names, so this is the
    guard against a symlink that points out of the version folder.
    """
    real_directory = os.path.realpath(directory)
    real_file = os.path.realpath(directory / file_name)
    return os.path.dirname(real_file) == real_directory


@dataclass(frozen=True)
class _Entry:
    version: str
    manifest: Manifest | None
    problem: str | None
    exported: bool


class ModelRepository:
    def __init__(self, root: str | Path, cache_dir: str | Path | None = None):
        self.root = Path(root)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        # Parsed manifests by folder, valid while manifest.json's stat is unchanged:
        # "latest" is resolved on every unpinned request, and re-parsing each
        # version's JSON each time would cost more than the lookup itself.
        self._parsed: dict[Path, tuple[tuple, Manifest | None, str | None]] = {}
        self._reported: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    # -- discovery ---------------------------------------------------------
    def _subfolders(self, directory: Path) -> list[str]:
        try:
            return [entry.name for entry in os.scandir(directory) if entry.is_dir()]
        except OSError:
            return []

    def _skip(self, what: str, problem: str) -> None:
        # Once per distinct problem: the scan runs on every unpinned request.
        if (what, problem) not in self._reported:
            self._reported.add((what, problem))
            log.warning("model repository: skipping %s: %s", what, problem)

    def _parse(self, name: str, version: str) -> tuple[Manifest | None, str | None]:
        directory = self.root / name / version
        path = directory / "manifest.json"
        try:
            stat = os.stat(path)
        except OSError as error:
            problem = f"model {name}:{version}: no readable manifest.json ({error.strerror or type(error).__name__})"
            self._skip(f"{name}/{version}", problem)
            return None, problem
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cached = self._parsed.get(directory)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        manifest, problem = None, None
        try:
            if not _inside(directory, "manifest.json"):
                raise ManifestError(f"model {name}:{version}: manifest.json is a link out of its version folder")
            manifest = Manifest.load(directory, source=f"model {name}:{version}")
            if (manifest.name, manifest.version) != (name, version):
                raise ManifestError(f"model {name}:{version}: its manifest names "
                                    f"{_shown(manifest.name)}:{_shown(manifest.version)}")
            # The weights are read as they are; a stale ONNX export is rebuilt (its
            # rename replaces a link), so only the weights decide here.
            self._file(directory, manifest.weights_file, f"{name}:{version}", "weights file")
        except Exception as error:  # noqa: BLE001 - whatever is wrong with one entry, the others stay usable
            manifest = None
            problem = str(error) if isinstance(error, ManifestError) else (
                f"model {name}:{version}: manifest.json cannot be read ({type(error).__name__})")
            self._skip(f"{name}/{version}", problem)
        with self._lock:
            self._parsed[directory] = (key, manifest, problem)
        return manifest, problem

    def _entries(self, name: str) -> list[_Entry]:
        """Every version folder of ``name`` with a number for a name, oldest first, usable or not."""
        entries = []
        for folder in self._subfolders(self.root / name):
            if folder.startswith("."):
                continue  # staging folders of a save in progress
            if not _VERSION.fullmatch(folder):
                self._skip(f"{name}/{folder!r}", "a version folder's name must be a number in ASCII digits")
                continue
            manifest, problem = self._parse(name, folder)
            exported = (self.root / name / folder / EXPORT_MARK).exists()
            entries.append(_Entry(folder, manifest, problem, exported))
        return sorted(entries, key=lambda e: int(e.version))

    def names(self) -> list[str]:
        found = []
        for folder in self._subfolders(self.root):
            if folder.startswith("."):
                continue
            if not _NAME.fullmatch(folder):
                self._skip(repr(folder), "not a valid model name")
            elif self.versions(folder):
                found.append(folder)
        return sorted(found)

    def versions(self, name: str) -> list[str]:
        """The usable versions of ``name``, oldest first, exported ones included."""
        if not _NAME.fullmatch(name):
            return []
        return [e.version for e in self._entries(name) if e.manifest is not None]

    def is_exported(self, name: str, version: str) -> bool:
        """Whether a version is an export not yet promoted (served only when pinned)."""
        return (self.root / check_name(name) / check_version(version) / EXPORT_MARK).exists()

    def resolve(self, ref: ModelRef | str) -> tuple[str, str]:
        ref = check_ref(ModelRef.parse(ref) if isinstance(ref, str) else ref)
        entries = self._entries(ref.name)
        usable = [e for e in entries if e.manifest is not None]
        if ref.version is not None:
            for entry in entries:
                if entry.version == ref.version:
                    if entry.manifest is None:
                        raise ManifestError(entry.problem)
                    return ref.name, ref.version
            raise ModelNotFound(f"model {ref.name!r} has no version {ref.version!r} "
                                f"(versions: {[e.version for e in usable]})")
        if not usable:
            if entries:
                raise ManifestError(f"model {ref.name!r} has no usable version: {entries[-1].problem}")
            raise ModelNotFound(f"model {ref.name!r} is not in the repository (models: {self.names()})")
        published = [e for e in usable if not e.exported]
        if not published:
            raise ModelNotFound(
                f"model {ref.name!r} has only exported versions ({[e.version for e in usable]}), which are "
                f"served only when pinned, e.g. {ref.name}:{usable[-1].version}, until an operator promotes one")
        return ref.name, published[-1].version

    def path(self, ref: ModelRef | str) -> Path:
        name, version = self.resolve(ref)
        return self.root / name / version

    # -- loading -----------------------------------------------------------
    def manifest(self, ref: ModelRef | str) -> Manifest:
        name, version = self.resolve(ref)
        manifest, problem = self._parse(name, version)
        if manifest is None:
            raise ManifestError(problem)
        return manifest

    def _file(self, directory: Path, file_name: str, label: str, what: str) -> Path:
        if not _inside(directory, file_name):
            raise ManifestError(f"model {label}: the {what} {file_name!r} links out of its version folder")
        return directory / file_name

    def load_torch(self, ref: ModelRef | str) -> tuple[torch.nn.Module, Manifest]:
        name, version = self.resolve(ref)
        manifest = self.manifest(ModelRef(name, version))
        label = f"{name}:{version}"
        weights = self._file(self.root / name / version, manifest.weights_file, label, "weights file")
        if not weights.is_file():
            raise ManifestError(f"model {label}: weights file {manifest.weights_file!r} is missing")
        if manifest.weights_sha256 and sha256_of(weights) != manifest.weights_sha256:
            raise ManifestError(f"model {label}: the weights' checksum does not match the manifest "
                                "(corrupt or replaced file)")
        model = build_network(manifest.architecture, manifest.encoder, manifest.in_channels, manifest.n_classes)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict({k: v.float() for k, v in state.items()})
        except Exception as error:  # noqa: BLE001 - any load failure means the same to a user
            # The detail (missing keys, shapes) is for the operator; torch's messages may name paths.
            log.warning("model %s: weights do not load: %s", label, error)
            raise ManifestError(
                f"model {label}: weights do not fit {manifest.architecture}/{manifest.encoder} with "
                f"{manifest.in_channels} input channels and {manifest.n_classes} classes "
                f"({type(error).__name__})"
            ) from None
        return model.eval(), manifest

    def _onnx_folders(self, name: str, version: str) -> list[Path]:
        folders = [self.root / name / version]
        if self.cache_dir is not None:
            # Built from the checked name and version, never from manifest fields.
            folders.append(self.cache_dir / name / version)
        return folders

    def _cache_folder(self, name: str, version: str) -> bool:
        """Create ``cache_dir/name/version``, refusing a folder on the way that is a link elsewhere."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        folder = self.cache_dir
        for part in (name, version):
            folder = folder / part
            if folder.is_symlink():
                self._skip(f"the ONNX cache folder for {name}:{version}", "it is a link, not a folder of the cache")
                return False
            folder.mkdir(exist_ok=True)
        return True

    def onnx_path(self, ref: ModelRef | str) -> Path:
        """The ONNX export for a version, building it on first use."""
        name, version = self.resolve(ref)
        manifest = self.manifest(ModelRef(name, version))
        file_name, marker_name = manifest.onnx_file, manifest.onnx_file + ".sha256"
        stamp = manifest.weights_sha256[:16]
        folders = self._onnx_folders(name, version)
        for folder in folders:
            candidate, marker = folder / file_name, folder / marker_name
            if not (candidate.is_file() and _inside(folder, file_name) and _inside(folder, marker_name)):
                continue
            if not stamp or (marker.is_file() and marker.read_text().strip() == stamp):
                return candidate
        model, manifest = self.load_torch(ModelRef(name, version))
        for folder in folders:
            try:
                if folder != folders[0] and not self._cache_folder(name, version):
                    continue
                export_onnx(model, manifest.in_channels, folder / file_name)
                atomic_write_text(folder / marker_name, stamp + "\n")
                return folder / file_name
            except OSError:
                continue
        raise ManifestError(
            f"model {name}:{version}: cannot write the ONNX export (read-only repository and no writable cache dir)"
        )

    # -- writing -----------------------------------------------------------
    def next_version(self, name: str) -> str:
        # Every numbered folder counts, unusable ones too: their number is taken.
        numbers = [int(f) for f in self._subfolders(self.root / check_name(name)) if _VERSION.fullmatch(f)]
        return str(max(numbers) + 1) if numbers else "1"

    def save(self, model: torch.nn.Module, manifest: Manifest, *, export: bool = True,
             exported_by: dict | None = None) -> Manifest:
        """Write a new version atomically (a temporary directory, then a rename).

        ``exported_by`` (who asked, from which session) marks the version as an
        export: pinned requests reach it, "latest" does not until ``promote``.
        """
        check_name(manifest.name)
        check_version(manifest.version)
        target = self.root / manifest.name / manifest.version
        if target.exists():
            raise AlreadyExists(f"model {manifest.name}:{manifest.version} already exists; versions are immutable")
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
            if exported_by is not None:
                (staging / EXPORT_MARK).write_text(
                    json.dumps({**exported_by, "exported_at": time.time()}, indent=2) + "\n")
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final

    def promote(self, ref: ModelRef | str) -> None:
        """Let an exported version become "latest" (an operator's decision, never a caller's)."""
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        if ref.version is None:
            raise ValueError("promote names a pinned version, e.g. buildings:3")
        name, version = self.resolve(ref)
        mark = self.root / name / version / EXPORT_MARK
        if mark.exists():
            os.replace(mark, mark.with_name(PROMOTED_MARK))
