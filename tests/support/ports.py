"""Loopback ports for servers that tests and benchmarks start."""
from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback TCP port nothing listens on now (another process could still take it before use)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_range(n: int, first: int = 56000, last: int = 60000) -> int:
    """The first port of ``n`` consecutive loopback ports nothing listens on now, as `dial up` takes them."""
    for base in range(first, last, n):
        try:
            for port in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {n} consecutive free ports in {first}..{last}")
