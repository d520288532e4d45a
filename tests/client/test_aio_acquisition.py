"""dial_client.aio.AcquisitionClient: the blocking AcquisitionClient's calls as coroutines, against a real
in-process Acquisition server."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

import dial_client
from dial_client import AcquisitionClient, AlreadyExists, NotFound
from tests.support.queue_jobs import scene, start_acquisition, write_raster


@pytest.fixture()
def address(tiny_repo, raster_root):
    running = start_acquisition(tiny_repo, raster_root, raster_root.parent / "queue-jobs")
    yield f"127.0.0.1:{running.port}"
    running.stop(0)


def test_the_asyncio_acquisition_client_offers_the_same_calls(address, raster_root):
    image = scene(seed=3)
    paths = [write_raster(raster_root / f"r{i}.tif", scene(seed=i)) for i in range(2)]

    async def session():
        async with dial_client.aio.AcquisitionClient(address, caller="alice") as client:
            await client.wait_until_ready(30)
            ranked = await client.rank(image, model="tiny", strategy="margin", patch_size=64)
            uncertainty = await client.uncertainty_map(image, model="tiny", strategy="entropy")
            job = await client.submit_queue(paths, model="tiny", patch_size=64, budget=5, request_id="aio-1")
            again = await client.create_queue_job(paths, model="tiny", patch_size=64, budget=5,
                                                  request_id="aio-1")
            with pytest.raises(AlreadyExists):
                await client.submit_queue(paths[:1], model="tiny", request_id="aio-1")
            while not (job := await client.job(job.name)).finished:
                await asyncio.sleep(0.05)
            pages = [page async for page in client.queue(job, page_size=2)]
            listed = [j.name async for j in client.jobs()]
            marked = await client.mark_done(job, [pages[0][0].id])
            after = [q.id async for page in client.queue(job, page_size=100) for q in page]
            with pytest.raises(NotFound):
                await client.job("queueJobs/0123456789abcdef")
        return ranked, uncertainty, job, again, pages, listed, marked, after

    ranked, uncertainty, job, again, pages, listed, marked, after = asyncio.run(session())
    with AcquisitionClient(address, caller="alice") as blocking:
        assert ranked == blocking.rank(image, model="tiny", strategy="margin", patch_size=64)
        expected_map = blocking.uncertainty_map(image, model="tiny", strategy="entropy").values
        assert blocking.job(job.name) == job
        assert [q for page in blocking.queue(job, page_size=100) for q in page] == [q for p in pages for q in p][1:]
    np.testing.assert_array_equal(uncertainty.values, expected_map)
    assert again.name == job.name and job.state == "SUCCEEDED" and job.rasters_done == 2
    assert [len(p) for p in pages] == [2, 2, 1] and [q.patch.rank for p in pages for q in p] == [1, 2, 3, 4, 5]
    assert listed == [job.name] and marked == 1
    assert after == [q.id for p in pages for q in p][1:]
