"""What every test layer shares: torch and ONNX Runtime on two threads, as on CI's runners.

Fixtures live with their layer (tests/<layer>/conftest.py), written once in
tests/support/fixtures.py; see tests/README.md.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
