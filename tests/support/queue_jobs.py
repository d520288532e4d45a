"""Helpers for queue-job tests over gRPC: an Acquisition server on a given job store, small GeoTIFFs."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dial.imagery.georef import GeoReference
from dial.imagery.raster import GeoTiffWriter
from tests.support.synthetic import make_scene

GEO = GeoReference("EPSG:32633", (0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0))


def start_acquisition(tiny_repo: Path, raster_root: Path, job_store: Path, **settings):
    from dial_services.acquisition.main import AcquisitionConfig, start

    config = AcquisitionConfig(**{"host": "127.0.0.1", "port": 0, "model_repo": tiny_repo,
                                  "raster_roots": (raster_root,), "provider": "cpu", "job_store": job_store,
                                  "session_store": raster_root.parent / "no-sessions"} | settings)
    return start(config)


def write_raster(path: Path, image: np.ndarray, geo: GeoReference | None = GEO) -> str:
    image = image if image.ndim == 3 else image[:, :, None]
    with GeoTiffWriter(path, height=image.shape[0], width=image.shape[1], bands=image.shape[2],
                       dtype=str(image.dtype), geo=geo) as writer:
        writer.write(image, 0, 0)
    return str(path)


def scene(size: int = 128, seed: int = 0) -> np.ndarray:
    return make_scene(size, size, seed=seed).image


def wait_finished(client, name: str, seconds: float = 120.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = client.job(name)
        if job.finished:
            return job
        time.sleep(0.05)
    raise AssertionError(f"{name} did not finish")


def eventually(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def wait_state(manager, job_id: str, states, seconds: float = 10.0):
    """The job's record once it is in one of ``states`` (a JobManager's store, read directly)."""
    def reached():
        record = manager.store.read(job_id)
        return record is not None and record.state in states

    assert eventually(reached, seconds), f"{job_id} is {manager.store.read(job_id)}, not in {states}"
    return manager.store.read(job_id)
