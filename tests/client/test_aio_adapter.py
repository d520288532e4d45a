"""dial_client.aio.AdapterClient: the blocking AdapterClient's calls and sessions as coroutines, against a real
in-process Adapter server."""
from __future__ import annotations

import asyncio
import inspect

import numpy as np
import pytest

import dial_client
from dial_client import AdapterClient, AlreadyExists, Click, FailedPrecondition, NotFound

SIZE = 48


@pytest.fixture()
def address(tiny_repo, raster_root, tmp_path):
    from dial_services.adapter.config import AdapterConfig
    from dial_services.adapter.main import start

    exports = tmp_path / "exports"
    exports.mkdir()
    running = start(AdapterConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, session_store=tmp_path / "sessions",
                                  export_repo=exports, raster_roots=(raster_root,), adaptation_steps=2, crop_px=32,
                                  learning_rate=3e-2))
    yield f"127.0.0.1:{running.port}"
    running.stop(0)


def public(cls) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls) if not name.startswith("_")}


def test_the_asyncio_client_has_the_blocking_clients_surface():
    from dial_client.aio import AdapterClient as AsyncAdapter, Session as AsyncSession

    assert public(AdapterClient) <= public(AsyncAdapter)
    assert public(dial_client.Session) == public(AsyncSession)
    for name in public(AsyncSession) - {"name", "session_id", "info"}:
        blocking = inspect.signature(getattr(dial_client.Session, name))
        assert inspect.signature(getattr(AsyncSession, name)).parameters == blocking.parameters, name
    assert (inspect.signature(AsyncAdapter.create_session).parameters
            == inspect.signature(AdapterClient.create_session).parameters)


def test_the_asyncio_adapter_client_runs_a_whole_session(address, tiny_manifest, raster_root):
    rng = np.random.default_rng(4)
    image = rng.integers(0, 255, (SIZE, SIZE, tiny_manifest.n_bands)).astype(tiny_manifest.input_dtype)

    async def run():
        async with dial_client.aio.AdapterClient(address, caller="alice") as client:
            await client.wait_until_ready(30)
            session = await client.create_session(image, model="tiny", variant="full", steps=3, request_id="a-1")
            again = await client.create_session(image, model="tiny", variant="full", steps=3, request_id="a-1")
            with pytest.raises(AlreadyExists):
                await client.create_session(image, model="tiny", steps=5, request_id="a-1")
            with pytest.raises(FailedPrecondition, match="no clicks"):
                await session.adapt()
            before = (await session.predict()).labels
            wrong = int((before[20, 20] + 1) % tiny_manifest.n_classes)
            await session.add_clicks([Click(20, 20, wrong), Click(40, 10, wrong)])
            undone = await session.undo()
            adapted = await session.adapt(steps=4)
            after = await session.predict(return_probabilities=True)
            exported = await session.export("tiny-adapted", "1")
            vectors = await session.export_vectors(str(raster_root / "map.gpkg"))
            listed = await client.list_sessions()
            found = await client.get_session(session.session_id)
            fetched = await found.get()
            await found.delete()
            with pytest.raises(NotFound):
                await session.get()
        return session, again, undone, adapted, after, exported, vectors, listed, fetched, wrong

    session, again, undone, adapted, after, exported, vectors, listed, fetched, wrong = asyncio.run(run())
    assert again.name == session.name and session.info.request_id == "a-1"
    assert undone.clicks == (Click(20, 20, wrong),)
    assert adapted.session.adaptation_count == 1 and adapted.adaptation_seconds > 0
    assert session.info.adaptation_count == 1  # the handle keeps the latest snapshot
    assert after.labels[20, 20] == wrong and after.probabilities.shape == (tiny_manifest.n_classes, SIZE, SIZE)
    assert (exported.name, exported.version) == ("tiny-adapted", "1")
    assert vectors.feature_count > 0 and (raster_root / "map.gpkg").is_file()
    assert [s.name for s in listed] == [session.name]
    assert fetched.clicks == undone.clicks and fetched.adaptation_count == 1
