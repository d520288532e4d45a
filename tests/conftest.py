"""What every test layer shares: how torch's threads behave.

Two threads, as on CI's runners. Waiting threads sleep instead of spinning
(OMP_WAIT_POLICY=PASSIVE): on two cores shared with other processes, spinning
threads made DISCA's 40-step adaptation take 38 s instead of 5.6 s, and
tests/core 700 s instead of 170 s. Set before any test module imports torch.

Fixtures live with their layer (tests/<layer>/conftest.py), written once in
tests/support/fixtures.py; see tests/README.md.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
