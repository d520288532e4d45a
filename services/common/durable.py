"""Files that survive a crash and that several replicas share: atomic writes and cross-process locks.

The Adapter's session store and Acquisition's queue-job store both live on a
shared volume (POSIX locks and atomic rename; NFSv4, CephFS, EFS) and build on
these. Every store file is written by :func:`dial.files.atomic_write_bytes`,
called through this module so that a test can make one store's volume full.

Both stores keep one folder per record, and share what goes wrong with one:

* a record that cannot be read back (truncated or edited by hand) is moved
  into ``<root>/quarantine/`` so that listing, counting and scheduling skip it,
  and only its owner is told (their ``owner`` file, written at creation, says
  who that is);
* a process killed mid-write leaves temporary files and staging folders, which
  :func:`remove_leftovers` clears once they are older than any write can take;
* a write the store refuses (full, read-only) raises :class:`StoreWriteError`,
  so that callers can tell the store's fault from a request's.

:class:`RecordStore` is that shared part; each store adds its own record and
files.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable, ClassVar, Iterator, TypeVar

from dial.files import TEMPORARY_NAME, atomic_write_bytes, fsync_dir

log = logging.getLogger(__name__)
Record = TypeVar("Record")

QUARANTINE = "quarantine"
OWNER_FILE = "owner"
# Longer than any one write takes (a session image of 4096^2 pixels on a slow shared volume), so that a
# write in progress on another replica never loses its temporary file.
LEFTOVER_SECONDS = 3600.0
_LEFTOVER_FOLDER = (".staging-", ".deleted-")
# Errors that say a record's bytes are not a record: JSON, encoding, missing or unknown fields, base64.
DAMAGE = (ValueError, KeyError, TypeError, AttributeError)


class StoreWriteError(OSError):
    """A store refused a write (full, read-only, failing disk): the store's fault, not the request's."""


class DamagedRecord(Exception):
    """A record exists but cannot be read back; ``owner`` is whose it was, when that is still known."""

    def __init__(self, name: str, owner: str | None):
        super().__init__(name)
        self.name = name
        self.owner = owner


def open_lock(path: Path) -> int:
    """A descriptor to ``fcntl.flock`` on; FileNotFoundError when the folder holding it is gone."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        if error.errno != errno.EROFS:
            raise
    # On a store remounted read-only, records must stay readable: flock works on a read-only descriptor.
    return os.open(path, os.O_RDONLY)


@contextlib.contextmanager
def writing() -> Iterator[None]:
    """Report a store's refusal to write as StoreWriteError. A missing file is left as it is: that is a
    record deleted meanwhile, not a store that cannot be written."""
    try:
        yield
    except (StoreWriteError, FileNotFoundError):
        raise
    except OSError as error:
        raise StoreWriteError(error.errno, error.strerror, error.filename) from error


def probe_writable(root: Path, size_bytes: int = 64 * 1024) -> None:
    """Write and remove a file the size of a large record; StoreWriteError when the store refuses.
    Not an empty file: a full disk still creates those."""
    path = root / ".writable-probe"
    with writing():
        atomic_write_bytes(path, bytes(size_bytes))
        path.unlink()


def remove_leftovers(root: Path, older_than: float) -> int:
    """Remove what a process killed mid-write leaves behind, once older than ``older_than`` (a time):
    atomic writes' temporary files in ``root`` and its record folders, and staging or trash folders.
    Returns how many went; what cannot be removed now is left for the next start."""
    removed = 0

    def old(path: Path) -> bool:
        try:
            return path.lstat().st_mtime < older_than
        except FileNotFoundError:
            return False

    def remove_temporaries(folder: Path) -> None:
        nonlocal removed
        with contextlib.suppress(OSError):
            for path in folder.iterdir():
                if TEMPORARY_NAME.match(path.name) and old(path):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                        removed += 1

    remove_temporaries(root)
    for entry in root.iterdir():
        if not entry.is_dir() or entry.is_symlink():
            continue
        if entry.name.startswith(_LEFTOVER_FOLDER):
            if old(entry):
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        elif entry.name != QUARANTINE:
            remove_temporaries(entry)
    if removed:
        log.info("removed %d files left by interrupted writes in %s", removed, root.name)
    return removed


def write_owner(folder: Path, owner: str) -> None:
    """Record who owns a record, apart from the record, so that a damaged record's owner is still known."""
    atomic_write_bytes(folder / OWNER_FILE, owner.encode())


def damaged_owner(folder: Path, record_file: str) -> str | None:
    """Whose the damaged record in ``folder`` was: its owner file, else what survives of the record's own
    ``"owner"`` field (records written before owner files), else None."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return (folder / OWNER_FILE).read_bytes().decode()
    try:
        text = (folder / record_file).read_bytes().decode(errors="replace")
    except OSError:
        return None
    match = re.search(r'"owner"\s*:\s*("(?:[^"\\]|\\.)*")', text)
    if match is None:
        return None
    with contextlib.suppress(ValueError):
        return json.loads(match.group(1))
    return None


def quarantine(root: Path, record_id: str, record_file: str, error: Exception) -> str | None:
    """Move a record folder that cannot be read into ``<root>/quarantine/``, where nothing scans it and an
    operator can look at it; returns its owner when known. A store mounted read-only keeps the record where
    it is, and each read reports it damaged again."""
    folder = root / record_id
    owner = damaged_owner(folder, record_file)
    log.error("record %s in %s cannot be read (%s: %s); moving it to %s/", record_id, root.name,
              type(error).__name__, str(error)[:200], QUARANTINE)
    try:
        (root / QUARANTINE).mkdir(exist_ok=True)
        os.rename(folder, root / QUARANTINE / record_id)
        fsync_dir(root)
    except FileNotFoundError:
        pass  # another replica moved it first
    except OSError as refused:
        log.warning("cannot move record %s aside: %s", record_id, refused.strerror)
    return owner


def quarantined(root: Path, record_id: str, record_file: str) -> tuple[bool, str | None]:
    """(whether ``record_id`` sits in quarantine, its owner when known)."""
    folder = root / QUARANTINE / record_id
    if not folder.is_dir():
        return False, None
    return True, damaged_owner(folder, record_file)


def quarantined_count(root: Path) -> int:
    try:
        return sum(1 for _ in (root / QUARANTINE).iterdir())
    except FileNotFoundError:
        return 0


def remove_quarantined(root: Path, record_id: str) -> bool:
    """Delete a quarantined record; whether there was one."""
    folder = root / QUARANTINE / record_id
    if not folder.is_dir():
        return False
    with writing():
        trash = root / f".deleted-{record_id}-{uuid.uuid4().hex[:8]}"
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return True


class RecordStore:
    """One folder per record, ``<root>/<id>/``, whose ``record_file`` is the commit point, and what goes
    wrong with one: a record that cannot be read is quarantined and only its owner is told.

    Subclasses name the record file, the resource collection (``sessions``, ``queueJobs``) and the ids
    they accept; an id that is not one never becomes a path.
    """

    record_file: ClassVar[str]
    collection: ClassVar[str]

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @staticmethod
    def is_id(text: str) -> bool:
        raise NotImplementedError

    def folder(self, record_id: str) -> Path:
        return self.root / record_id

    def _read(self, record_id: str, parse: Callable[[str], Record]) -> Record | None:
        """The parsed record, None when there is none; DamagedRecord (once it is moved aside) when it cannot
        be read."""
        if not self.is_id(record_id):
            return None
        try:
            return parse((self.folder(record_id) / self.record_file).read_text())
        except FileNotFoundError:
            return None
        except DAMAGE as error:
            owner = quarantine(self.root, record_id, self.record_file, error)
            self._moved_aside(record_id)
            raise DamagedRecord(f"{self.collection}/{record_id}", owner) from None

    def _moved_aside(self, record_id: str) -> None:
        """What else goes with a record once it is quarantined (nothing, unless a store keeps an index)."""

    def damaged_owner(self, record_id: str) -> str | None:
        """The owner of a record that was moved aside as damaged; None when there is no such record."""
        return quarantined(self.root, record_id, self.record_file)[1] if self.is_id(record_id) else None

    def delete_damaged(self, record_id: str) -> bool:
        return self.is_id(record_id) and remove_quarantined(self.root, record_id)

    def quarantined_count(self) -> int:
        return quarantined_count(self.root)

    def remove_leftovers(self, older_than: float) -> int:
        """Temporary files and staging folders left by a process killed mid-write."""
        return remove_leftovers(self.root, older_than)
