"""The serving commands of the ``dial`` command line: ``serve`` and ``up``, one module each.

Like the core's commands (``dial.commands``), each module has
``register(subparsers)``; the console script (``dial_services.cli``)
registers both sets.
"""
from __future__ import annotations

from dial_services.commands import serve, up

COMMANDS = (serve, up)


def register(subparsers) -> None:
    for command in COMMANDS:
        command.register(subparsers)
