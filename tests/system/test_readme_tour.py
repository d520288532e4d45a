"""The README's five-minute tour, run as written against `dial up` on the shipped models and the real data."""
import os
import re
import signal
import subprocess
import sys

import pytest

from dial_client import AcquisitionClient, AdapterClient, SegmenterClient
from tests.support.paths import REPO_ROOT, SHARED_DATA
from tests.support.ports import free_port_range

# The addresses `make up` prints and the tour calls, in `dial up`'s order.
TOUR_ADDRESSES = ("127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053")


def readme_tour() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert blocks, "README.md has no python block"
    return blocks[0]


def test_readme_tour_runs_as_written(tmp_path):
    tour = readme_tour()
    for address in TOUR_ADDRESSES:
        assert address in tour
    # Only the ports move, so a `make up` already running here cannot answer instead. The tour runs
    # from a folder of its own, beside a `shared/data` that is the real one, as the README's
    # `../shared/data` paths expect; its .dial/ (the services' state and the queue's rasters) lands there.
    base = free_port_range(2 * len(TOUR_ADDRESSES))
    addresses = [f"127.0.0.1:{base + i}" for i in range(len(TOUR_ADDRESSES))]
    for default, address in zip(TOUR_ADDRESSES, addresses):
        tour = tour.replace(default, address)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(SHARED_DATA)

    up = subprocess.Popen(
        [sys.executable, "-m", "dial_services.cli", "up", "--model-repo", str(REPO_ROOT / "models"),
         "--base-port", str(base), "--metrics-base-port", str(base + len(addresses))],
        cwd=checkout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    try:
        # "With `make up` running": every service SERVING, its models loaded (first ONNX exports included).
        for client_type, address in zip((SegmenterClient, AdapterClient, AcquisitionClient), addresses):
            with client_type(address) as client:
                client.wait_until_ready(300)
        run = subprocess.run([sys.executable, "-c", tour], cwd=checkout, capture_output=True, text=True,
                             timeout=600, env=dict(os.environ))
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up_output = up.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            up.kill()
            pytest.fail("dial up did not stop within 60 s of SIGTERM")
    assert run.returncode == 0, run.stderr[-3000:] + up_output[-3000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith("('Building', 'Land (unpaved area)', 'Road'")
    assert lines[1].startswith("(644, 797) ")
    changed = [int(line.split()[0]) for line in lines if line.endswith("pixels changed")]
    assert len(changed) == 1 and changed[0] > 0, run.stdout
    assert "SUCCEEDED 2 2" in lines
    queued = [line for line in lines if line.startswith(".dial/tour/tile1_image_part_00")]
    assert len(queued) == 5, run.stdout
    assert lines[-1] == "1 patch marked done"
