"""The Adapter service over real gRPC channels: sessions, durability, isolation and limits."""
from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest

from dial_client import AdapterClient, Click, Session
from dial_client.wire import adapter_pb2
from dial_client.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from tests.support.ports import free_port

SIZE = 64


@pytest.fixture(scope="module")
def image(tiny_manifest):
    rng = np.random.default_rng(3)
    return rng.integers(0, 255, (SIZE, SIZE, tiny_manifest.n_bands)).astype(tiny_manifest.input_dtype)


def start_adapter(tiny_repo, store, **overrides):
    from dial_services.adapter.config import AdapterConfig
    from dial_services.adapter.main import start

    settings = dict(host="127.0.0.1", port=0, model_repo=tiny_repo, session_store=store, adaptation_steps=2,
                    crop_px=64, learning_rate=3e-2)
    settings.update(overrides)
    running = start(AdapterConfig(**settings))
    return f"127.0.0.1:{running.port}", running


@pytest.fixture()
def adapter(writable_repo, tmp_path):
    address, running = start_adapter(writable_repo, tmp_path / "sessions")
    yield address, running
    running.stop(0)


def test_session_lifecycle(adapter, image, writable_repo):
    address, _ = adapter
    with AdapterClient(address, caller="alice") as client:
        session = client.create_session(image, model="tiny", variant="full", steps=3)
        assert session.info.model == "tiny" and session.info.version == "1"
        assert (session.info.image_height, session.info.image_width) == (SIZE, SIZE)
        assert session.info.config.variant == "full" and session.info.config.steps == 3
        before = session.predict().labels
        wrong = int((before[20, 20] + 1) % 6)
        info = session.add_clicks([Click(20, 20, wrong), Click(40, 10, wrong)])
        assert info.clicks == (Click(20, 20, wrong), Click(40, 10, wrong))
        assert session.undo().clicks == (Click(20, 20, wrong),)
        result = session.adapt(steps=4)
        assert result.session.adaptation_count == 1 and result.adaptation_seconds > 0
        after = session.predict(return_probabilities=True)
        assert after.labels[20, 20] == wrong
        assert after.probabilities.shape == (6, SIZE, SIZE)
        assert session.get().update_time >= session.info.create_time
        assert [s.name for s in client.list_sessions()] == [session.name]

        exported = session.export("tiny-adapted", "1")
        assert exported.name == "tiny-adapted" and exported.version == "1"
        from dial.model.repository import ModelRepository

        manifest = ModelRepository(writable_repo).manifest("tiny-adapted:1")
        assert manifest.training["adapted_from"]["session"] == session.name
        assert manifest.training["adapted_from"]["base_model"] == "tiny:1"
        with pytest.raises(Exception, match="already exists"):
            session.export("tiny-adapted", "1")

        session.delete()
        with pytest.raises(NotFound):
            session.get()
        assert client.list_sessions() == []


def test_requests_are_validated(adapter, image):
    address, _ = adapter
    with AdapterClient(address) as client:
        session = client.create_session(image, model="tiny")
        with pytest.raises(FailedPrecondition):
            session.undo()
        with pytest.raises(FailedPrecondition):
            session.adapt()
        with pytest.raises(InvalidArgument) as raised:
            session.add_clicks([Click(SIZE + 5, 0, 1), Click(0, 0, 9)])
        assert {v.field for v in raised.value.field_violations} == {"clicks[0].pixel", "clicks[1].class_id"}
        assert session.get().clicks == ()
        with pytest.raises(InvalidArgument):
            client.get_session("not-a-session")
        with pytest.raises(InvalidArgument):
            client.create_session(image, model="tiny", variant="fast", annotation_dropout=0.5)
        with pytest.raises(NotFound):
            client.create_session(image, model="no-such-model")


def test_callers_cannot_see_each_others_sessions(adapter, image):
    address, _ = adapter
    with AdapterClient(address, caller="alice") as alice, AdapterClient(address, caller="bob") as bob, \
            AdapterClient(address) as anonymous:
        session = alice.create_session(image, model="tiny")
        session.add_clicks([Click(1, 1, 0)])
        for other in (bob, anonymous):
            with pytest.raises(NotFound):
                other.get_session(session.session_id)
            assert other.list_sessions() == []
        with pytest.raises(NotFound):
            Session(bob, session.info).delete()  # bob knows the name but still cannot touch it
        assert alice.get_session(session.session_id).info.clicks == (Click(1, 1, 0),)


def test_concurrent_adds_on_one_session_lose_nothing(adapter, image):
    address, _ = adapter
    with AdapterClient(address, caller="alice") as client:
        session = client.create_session(image, model="tiny")
        expected = {Click(t, k, 1) for t in range(6) for k in range(4)}

        def add(t):
            handle = client.get_session(session.session_id)
            for k in range(4):
                handle.add_clicks([Click(t, k, 1)])

        threads = [threading.Thread(target=add, args=(t,)) for t in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        clicks = session.get().clicks
        assert len(clicks) == 24 and set(clicks) == expected
        # Each thread's own clicks stay in its order.
        for t in range(6):
            assert [c.col for c in clicks if c.row == t] == [0, 1, 2, 3]


def test_idle_sessions_expire(tiny_repo, tmp_path, image):
    store = tmp_path / "sessions"
    address, running = start_adapter(tiny_repo, store, session_ttl_seconds=4.0, sweep_seconds=0.2)
    try:
        with AdapterClient(address) as client:
            idle = client.create_session(image, model="tiny")
            kept = client.create_session(image, model="tiny")
            deadline = time.monotonic() + 60
            while (store / idle.session_id).exists() and time.monotonic() < deadline:
                time.sleep(0.3)
                kept.get()  # use keeps a session alive; only the idle one may expire
            assert [s.name for s in client.list_sessions()] == [kept.name]
            with pytest.raises(NotFound):
                idle.get()
            assert not (store / idle.session_id).exists()
    finally:
        running.stop(0)


def test_per_caller_session_limit(tiny_repo, tmp_path, image):
    address, running = start_adapter(tiny_repo, tmp_path / "s", max_sessions_per_caller=1)
    try:
        with AdapterClient(address, caller="alice") as alice, AdapterClient(address, caller="bob") as bob:
            alice.create_session(image, model="tiny")
            with pytest.raises(ResourceExhausted):
                alice.create_session(image, model="tiny")
            bob.create_session(image, model="tiny")
    finally:
        running.stop(0)


def test_full_store_refuses_the_change_and_leaves_the_session_as_it_was(adapter, image, monkeypatch):
    from dial_services.common import durable  # every store writes through durable.atomic_write_bytes

    address, _ = adapter
    with AdapterClient(address) as client:
        session = client.create_session(image, model="tiny", variant="full")
        session.add_clicks([Click(5, 5, 2)])
        session.adapt()
        labels = session.predict().labels
        real_write = durable.atomic_write_bytes

        def full(path, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(durable, "atomic_write_bytes", full)
        with pytest.raises(ResourceExhausted):
            session.add_clicks([Click(9, 9, 1)])
        with pytest.raises(ResourceExhausted):
            session.adapt(steps=20)
        with pytest.raises(ResourceExhausted):
            client.create_session(image, model="tiny")
        info = session.get()
        assert info.clicks == (Click(5, 5, 2),) and info.adaptation_count == 1
        assert np.array_equal(session.predict().labels, labels)

        monkeypatch.setattr(durable, "atomic_write_bytes", real_write)
        assert session.add_clicks([Click(9, 9, 1)]).clicks[-1] == Click(9, 9, 1)
        assert session.adapt().session.adaptation_count == 2


def test_read_only_store_is_unavailable_and_sessions_stay_readable(adapter, image, monkeypatch):
    from dial_client.errors import Unavailable
    from dial_services.common import durable  # every store writes through durable.atomic_write_bytes

    address, _ = adapter
    with AdapterClient(address, retries=0) as client:
        session = client.create_session(image, model="tiny")
        session.add_clicks([Click(5, 5, 2)])

        def read_only(path, data):
            raise OSError(errno.EROFS, "Read-only file system")

        real_open = os.open

        def open_read_only(path, flags, *args):
            if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            return real_open(path, flags, *args)

        monkeypatch.setattr(durable, "atomic_write_bytes", read_only)
        monkeypatch.setattr(durable.os, "open", open_read_only)
        with pytest.raises(Unavailable, match="read-only"):
            session.add_clicks([Click(9, 9, 1)])
        assert session.get().clicks == (Click(5, 5, 2),)
        assert session.predict().labels.shape == (SIZE, SIZE)
        monkeypatch.undo()
        assert session.add_clicks([Click(9, 9, 1)]).clicks == (Click(5, 5, 2), Click(9, 9, 1))


def test_replicas_sharing_a_store_see_each_others_changes(tiny_repo, tmp_path, image):
    store = tmp_path / "shared"
    a, first = start_adapter(tiny_repo, store, max_sessions_in_memory=1)
    b, second = start_adapter(tiny_repo, store)
    try:
        with AdapterClient(a) as on_a, AdapterClient(b) as on_b:
            session = on_a.create_session(image, model="tiny", variant="fast")
            other = on_a.create_session(image, model="tiny")  # evicts the first from a's memory
            on_b.get_session(session.session_id).add_clicks([Click(3, 3, 1)])
            session.add_clicks([Click(4, 4, 2)])
            on_b.get_session(session.session_id).adapt()
            info = session.get()
            assert info.clicks == (Click(3, 3, 1), Click(4, 4, 2)) and info.adaptation_count == 1
            assert session.adapt().session.adaptation_count == 2
            assert other.get().clicks == ()
        assert first.sessions.in_memory() == 1
        exposition = first.metrics.exposition().decode()
        evictions = re.search(r"^dial_adapter_session_evictions_total (\S+)$", exposition, re.M)
        assert float(evictions.group(1)) >= 2  # a and its twin took turns in a's one memory slot
    finally:
        first.stop(0)
        second.stop(0)


def _serve(tiny_repo, store, port):
    env = dict(os.environ, DIAL_NO_MALLOC_TUNING="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "dial_services.cli", "serve", "adapter", "--host", "127.0.0.1",
           "--port", str(port), "--metrics-port", "0", "--model-repo", str(tiny_repo),
           "--session-store", str(store), "--adaptation-steps", "2", "--crop-px", "64"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=120)
    except grpc.FutureTimeoutError:
        proc.kill()
        raise AssertionError(proc.stderr.read().decode()[-2000:]) from None
    finally:
        channel.close()
    return proc


def test_killed_server_resumes_every_acknowledged_click(tiny_repo, tmp_path, image):
    store, port = tmp_path / "sessions", free_port()
    proc = _serve(tiny_repo, store, port)
    try:
        with AdapterClient(f"127.0.0.1:{port}", caller="alice", retries=0) as client:
            session = client.create_session(image, model="tiny")
            acknowledged = []
            for k in range(5):
                click = Click(10 + k, 20, 1)
                session.add_clicks([click])
                acknowledged.append(click)
            session.adapt()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

        proc = _serve(tiny_repo, store, port)
        with AdapterClient(f"127.0.0.1:{port}", caller="alice") as client:
            resumed = client.get_session(session.session_id)
            assert resumed.info.clicks == tuple(acknowledged)
            assert resumed.info.adaptation_count == 1
            assert resumed.adapt().session.adaptation_count == 2
            assert resumed.predict().labels.shape == (SIZE, SIZE)
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_sessions_list_newest_first_across_pages(adapter, image):
    address, _ = adapter
    with AdapterClient(address, caller="carol") as client:
        names = [client.create_session(image, model="tiny").name for _ in range(3)]
        assert [s.name for s in client.list_sessions(page_size=2)] == names[::-1]
        with pytest.raises(InvalidArgument):
            client._call("ListSessions", adapter_pb2.ListSessionsRequest(page_token="bogus"), None)


def test_session_on_a_raster_window_keeps_its_georeference(tiny_repo, tmp_path, image):
    import rasterio
    from rasterio.transform import from_origin

    root = tmp_path / "rasters"
    root.mkdir()
    path = root / "scene.tif"
    transform = from_origin(500000.0, 4000000.0, 0.5, 0.5)
    with rasterio.open(path, "w", driver="GTiff", height=SIZE, width=SIZE, count=image.shape[2], dtype="uint8",
                       crs="EPSG:32631", transform=transform) as dst:
        dst.write(np.moveaxis(image, -1, 0))
    address, running = start_adapter(tiny_repo, tmp_path / "s", raster_roots=(root,))
    try:
        with AdapterClient(address) as client:
            session = client.create_session(str(path), model="tiny", window=(8, 16, 32, 40))
            info = session.info
            assert (info.image_height, info.image_width) == (32, 40)
            assert info.geo.crs == "EPSG:32631"
            assert info.geo.transform[2] == pytest.approx(500000.0 + 16 * 0.5)
            assert info.geo.transform[5] == pytest.approx(4000000.0 - 8 * 0.5)
            with pytest.raises(InvalidArgument):
                client.create_session(str(path), model="tiny", window=(40, 0, 32, 32))
            with pytest.raises(Exception, match="outside the allowed raster roots"):
                client.create_session(str(tmp_path / "elsewhere.tif"), model="tiny")
    finally:
        running.stop(0)


def test_unset_adaptation_settings_come_from_the_models_manifest(writable_repo, tmp_path, image):
    import json

    manifest_path = writable_repo / "tiny" / "1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["adaptation"] = {"recall_weight": 0.25, "learning_rate": {"fast": 2e-3}}
    manifest_path.write_text(json.dumps(manifest))
    address, running = start_adapter(writable_repo, tmp_path / "sessions", learning_rate=None)
    try:
        with AdapterClient(address) as client:
            tuned = client.create_session(image, model="tiny", variant="fast").info.config
            assert (tuned.learning_rate, tuned.recall_weight) == (2e-3, 0.25)
            # No tuned rate for full: DIAL's default; a caller's own value always wins.
            from dial.adaptation.disca import DEFAULT_LEARNING_RATES

            mine = client.create_session(image, model="tiny", variant="full", recall_weight=0.9).info.config
            assert (mine.learning_rate, mine.recall_weight) == (DEFAULT_LEARNING_RATES["full"], 0.9)
    finally:
        running.stop(0)
