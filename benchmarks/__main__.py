"""``python -m benchmarks [NAME ...]``: run the benchmarks, each in a fresh process.

A fresh process per benchmark keeps one benchmark's warm caches and memory
out of the next one's figures.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dial_services.malloc_tuning import MALLOC_TUNABLES

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    available = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    chosen = argv or available
    unknown = [n for n in chosen if n not in available]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available}", file=sys.stderr)
        return 2
    # Measured with the allocator settings `dial` runs under (glibc's defaults
    # halve torch's CPU speed here), unless the caller chose others.
    env = dict(os.environ)
    env.setdefault("GLIBC_TUNABLES", MALLOC_TUNABLES)
    status = 0
    for name in chosen:
        print(f"== {name}", flush=True)
        status |= subprocess.call([sys.executable, "-m", f"benchmarks.bench_{name}"], cwd=HERE.parent,
                                  env=env)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
