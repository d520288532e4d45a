"""The fixtures the test layers share, each written once; a layer's conftest.py imports those it uses.

A session fixture imported into several conftest files is a separate fixture in
each, so the ones that cost time build through :func:`_once`: a full run
trains one tiny model, however many layers ask for it.
"""
from __future__ import annotations

import errno
import os
import shutil
import threading
from pathlib import Path

import pytest

_BUILT: dict[tuple[Path, str], Path] = {}


def _once(tmp_path_factory, key: str, build) -> Path:
    # Keyed by the session's base folder, so a nested pytest session builds its own.
    slot = (tmp_path_factory.getbasetemp(), key)
    if slot not in _BUILT:
        _BUILT[slot] = build()
    return _BUILT[slot]


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    from tests.support.tiny_model import make_tiny_scenes

    return _once(tmp_path_factory, "synthetic_dataset",
                 lambda: make_tiny_scenes(tmp_path_factory.mktemp("synthetic") / "scenes"))


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory, synthetic_dataset) -> Path:
    """A model repository holding ``tiny:1``, a 6-class model trained briefly on synthetic scenes."""
    from tests.support.tiny_model import train_tiny_model

    def build() -> Path:
        repo = tmp_path_factory.mktemp("models")
        train_tiny_model(synthetic_dataset, repo, tmp_path_factory.mktemp("work"), command="test fixture")
        return repo

    return _once(tmp_path_factory, "tiny_repo", build)


@pytest.fixture(scope="session")
def tiny_manifest(tiny_repo):
    from dial.model.repository import ModelRepository

    return ModelRepository(tiny_repo).manifest("tiny")


@pytest.fixture()
def writable_repo(tiny_repo, tmp_path) -> Path:
    """A private copy of the tiny repository, for tests that add model versions."""
    copy = tmp_path / "writable-models"
    shutil.copytree(tiny_repo, copy)
    return copy


@pytest.fixture()
def raster_root(tmp_path) -> Path:
    root = tmp_path / "rasters"
    root.mkdir()
    return root


@pytest.fixture()
def free_port() -> int:
    from tests.support.ports import free_port

    return free_port()


@pytest.fixture()
def segmenter(tiny_repo, raster_root):
    """A running in-process segmenter on a free loopback port: (address, RunningServer)."""
    from dial_services.segmenter.config import SegmenterConfig
    from dial_services.segmenter.main import start

    config = SegmenterConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, raster_roots=(raster_root,),
                             max_queue_delay_ms=1.0)
    running = start(config)
    yield f"127.0.0.1:{running.port}", running
    running.stop(0)


@pytest.fixture()
def full_store(monkeypatch):
    """While set, every write to a session or job store fails as on a full volume (ENOSPC): the stores
    all write through durable.atomic_write_bytes."""
    from dial_services.common import durable

    full = threading.Event()
    real = durable.atomic_write_bytes

    def atomic_write_bytes(path, data):
        if full.is_set():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(durable, "atomic_write_bytes", atomic_write_bytes)
    return full
