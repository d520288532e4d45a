"""The ``dial`` console script: the core's commands (``dial.commands``) and the serving ones.

This is the one place the command line is assembled; it runs under the malloc
tunables (``dial_services.malloc_tuning``), which it applies to itself.
"""
from __future__ import annotations

import argparse
import logging
import sys

from dial import commands as core_commands
from dial_services import commands as service_commands
from dial_services.malloc_tuning import ensure_malloc_tuning


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dial", description="DIAL: interactive segmentation of EO imagery")
    parser.add_argument("-v", "--verbose", action="store_true")
    subparsers = parser.add_subparsers(dest="command", required=True)
    core_commands.register(subparsers)
    service_commands.register(subparsers)
    return parser


def main(argv=None) -> int:
    if argv is None:  # the console script itself, not a caller passing arguments in-process
        ensure_malloc_tuning("dial_services.cli")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
