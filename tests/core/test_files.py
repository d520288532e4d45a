"""The atomic file write: the old file or the new one, whole, and nothing left behind."""
import os

import pytest

from dial.files import TEMPORARY_NAME, atomic_path, atomic_write_bytes, atomic_write_text


def test_a_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "record.json"
    atomic_write_text(target, "old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["record.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("old")
    seen = []
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            seen.append(tmp.name)
            tmp.write_text("half")
            raise RuntimeError("the writer failed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["model.onnx"]
    assert TEMPORARY_NAME.match(seen[0])  # what a store's clean-up recognises as left by a killed write


def test_a_planted_symlink_is_replaced_not_written_through(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    folder = tmp_path / "version"
    folder.mkdir()
    (folder / "mark").symlink_to(outside)
    atomic_write_text(folder / "mark", "stamp\n")
    assert outside.read_text() == "keep"
    assert not (folder / "mark").is_symlink() and (folder / "mark").read_text() == "stamp\n"
