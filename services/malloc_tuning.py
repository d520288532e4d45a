"""The malloc tunables (``malloc.env``, beside this module) and the re-exec that applies them.

glibc reads ``GLIBC_TUNABLES`` once, when a process starts, so a process that
was started without them can only get them by starting again: the ``dial``
command re-executes itself with them unless the operator has set their own.
"""
from __future__ import annotations

import os
import sys
from importlib.resources import files


def _read(text: str) -> str:
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key == "GLIBC_TUNABLES":
            return value
    raise ValueError("malloc.env sets no GLIBC_TUNABLES")


MALLOC_TUNABLES = _read(files("dial_services").joinpath("malloc.env").read_text())


def ensure_malloc_tuning(module: str) -> None:
    """Re-execute ``python -m module`` with this process's arguments under the tunables, where they apply."""
    if sys.platform != "linux" or "GLIBC_TUNABLES" in os.environ or os.environ.get("DIAL_NO_MALLOC_TUNING"):
        return
    env = dict(os.environ, GLIBC_TUNABLES=MALLOC_TUNABLES)
    os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], env)
