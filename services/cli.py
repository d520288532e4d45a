"""The ``dial`` console script: the core's science commands plus serving."""
from __future__ import annotations

import os
import sys

from dial import cli as core_cli

# glibc's default malloc returns freed arenas to the kernel after every large
# tensor, costing about a million page faults per batch and halving torch CPU
# speed on our machines. Tunables are read once at process start, so the CLI
# re-executes itself with them unless the operator has set their own.
# Since freed memory then stays in the process, arena_max=2 keeps the gRPC
# worker threads from each growing an arena of their own: under concurrent
# load the adapter levelled off about 260 MB lower, at the same throughput.
MALLOC_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=100000000000:glibc.malloc.arena_max=2"


def _ensure_malloc_tuning() -> None:
    if sys.platform != "linux" or "GLIBC_TUNABLES" in os.environ or os.environ.get("DIAL_NO_MALLOC_TUNING"):
        return
    env = dict(os.environ, GLIBC_TUNABLES=MALLOC_TUNABLES)
    os.execve(sys.executable, [sys.executable, "-m", "dial_services.cli", *sys.argv[1:]], env)


def build_parser():
    parser = core_cli.build_parser()
    sub = next(a for a in parser._subparsers._group_actions if a.dest == "command")  # noqa: SLF001
    try:
        from dial_services.commands import add_commands
    except ImportError:  # serving commands arrive with the services
        return parser
    add_commands(sub)
    return parser


def main(argv=None) -> int:
    if argv is None:
        _ensure_malloc_tuning()
    return core_cli.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
