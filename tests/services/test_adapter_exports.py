"""ExportSessionModel on a read-only model repository: FAILED_PRECONDITION saying what to do, not a retryable
UNAVAILABLE; with export_repo the export lands in a writable repository of its own."""
from __future__ import annotations

import errno
import pathlib

import numpy as np
import pytest

from dial_client import AdapterClient
from dial_client.errors import AlreadyExists, FailedPrecondition
from tests.services.test_adapter_service import start_adapter

SIZE = 32


@pytest.fixture(scope="module")
def image(tiny_manifest):
    rng = np.random.default_rng(9)
    return rng.integers(0, 255, (SIZE, SIZE, tiny_manifest.n_bands)).astype(tiny_manifest.input_dtype)


@pytest.fixture()
def read_only(monkeypatch):
    """Make folders under the given roots refuse new entries as a read-only mount does (EROFS)."""
    roots: list[pathlib.Path] = []
    real_mkdir = pathlib.Path.mkdir

    def mkdir(self, *args, **kwargs):
        if any(self.resolve().is_relative_to(root.resolve()) for root in roots):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    return roots


def test_a_read_only_repository_is_a_precondition_with_the_setting_to_fix_it(writable_repo, tmp_path, image,
                                                                           read_only):
    address, running = start_adapter(writable_repo, tmp_path / "sessions")
    read_only.append(writable_repo)
    try:
        with AdapterClient(address, caller="alice") as client:
            session = client.create_session(image, model="tiny")
            with pytest.raises(FailedPrecondition, match="read-only") as refused:
                session.export("tiny-adapted", "1")
            assert "DIAL_EXPORT_REPO" in str(refused.value) and "OPERATIONS.md" in str(refused.value)
            assert str(writable_repo) not in str(refused.value)
            assert not (writable_repo / "tiny-adapted").exists()
    finally:
        running.stop(0)


def test_exports_go_to_the_export_repository_and_never_shadow_a_served_version(writable_repo, tmp_path, image,
                                                                              read_only):
    from dial.model.repository import ModelRepository

    exports = tmp_path / "exports"
    exports.mkdir()
    address, running = start_adapter(writable_repo, tmp_path / "sessions", export_repo=exports)
    read_only.append(writable_repo)
    try:
        with AdapterClient(address, caller="alice") as client:
            session = client.create_session(image, model="tiny")
            exported = session.export("tiny-adapted", "1")
            assert (exported.name, exported.version) == ("tiny-adapted", "1")
            manifest = ModelRepository(exports).manifest("tiny-adapted:1")
            assert manifest.training["adapted_from"]["session"] == session.name
            assert (exports / "tiny-adapted" / "1" / "exported.json").is_file()
            assert not (writable_repo / "tiny-adapted").exists()
            # tiny:1 is served: an export of that name and version could never be copied over it.
            with pytest.raises(AlreadyExists, match="tiny:1 already exists"):
                session.export("tiny", "1")
            assert not (exports / "tiny").exists()
    finally:
        running.stop(0)


def test_export_repo_must_be_a_folder(writable_repo, tmp_path):
    from pydantic import ValidationError

    from dial_services.adapter.config import AdapterConfig

    with pytest.raises(ValidationError, match="export repository .* is not a folder"):
        AdapterConfig(model_repo=writable_repo, export_repo=tmp_path / "missing")
