"""The client against real segmenters: waiting for one that starts late, readiness, typed metadata,
readable errors, and the asyncio client."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

import dial_client
from dial_client import ClassInfo, InvalidArgument, ModelInfo, SegmenterClient, Unavailable

IMAGE = np.random.default_rng(0).integers(0, 255, size=(64, 64, 3), dtype=np.uint8)


def test_a_call_made_before_the_server_starts_waits_for_it_within_its_deadline(tiny_repo, tmp_path, free_port):
    from tests.support.processes import ServiceProcess, model_args

    started: list[ServiceProcess] = []
    late_by_s = 3.0

    def start_late() -> None:
        time.sleep(late_by_s)
        started.append(ServiceProcess("segmenter", model_args(tiny_repo, tmp_path / "cache"), port=free_port,
                                      log_dir=tmp_path))

    launcher = threading.Thread(target=start_late)
    try:
        with SegmenterClient(f"127.0.0.1:{free_port}", timeout=180) as client:
            assert not client.is_server_ready()
            began = time.monotonic()
            launcher.start()
            result = client.predict(IMAGE, model="tiny")
            waited = time.monotonic() - began
            assert client.is_server_ready()
            assert client.is_model_ready("tiny")
        assert waited >= late_by_s  # it did wait: nothing listened before then
        assert result.labels.shape == (64, 64) and (result.model, result.version) == ("tiny", "1")
    finally:
        launcher.join()
        for process in started:
            process.stop()


def test_without_wait_for_ready_a_call_to_an_absent_server_fails_at_once(free_port):
    with SegmenterClient(f"127.0.0.1:{free_port}", timeout=30, retries=0, wait_for_ready=False) as client:
        began = time.monotonic()
        with pytest.raises(Unavailable):
            client.predict(IMAGE, model="tiny")
    assert time.monotonic() - began < 10


def test_wait_until_ready_gives_up_at_its_timeout(free_port):
    with SegmenterClient(f"127.0.0.1:{free_port}") as client:
        began = time.monotonic()
        with pytest.raises(dial_client.DeadlineExceeded, match="not ready within"):
            client.wait_until_ready(1.0)
    assert 0.9 <= time.monotonic() - began < 10


def test_readiness_of_server_and_models(segmenter):
    address, _ = segmenter
    with SegmenterClient(address) as client:
        client.wait_until_ready(30)
        assert client.is_server_ready()
        assert client.is_model_ready("tiny") and client.is_model_ready("tiny", "1")
        assert not client.is_model_ready("tiny", "9") and not client.is_model_ready("absent")


def test_model_metadata_is_typed(segmenter, tiny_manifest):
    address, _ = segmenter
    with SegmenterClient(address) as client:
        models = client.list_models()
        model = client.get_model("tiny")
    assert models == [model] and isinstance(model, ModelInfo)
    assert (model.name, model.version, model.ready) == ("tiny", "1", True)
    assert model.provider == "CPUExecutionProvider" and model.input_dtype == "uint8"
    assert model.class_names == tuple(tiny_manifest.class_names)
    assert all(isinstance(c, ClassInfo) and c.colour.startswith("#") for c in model.classes)
    assert [c.id for c in model.classes] == list(range(len(model.classes)))
    class_id, name, colour = model.classes[1]  # a tuple, as map legends unpack it
    assert (class_id, name) == (1, tiny_manifest.class_names[1])
    assert len(model.bands) == 3 and all(b.std > 0 for b in model.bands)
    assert (model.tile_px, model.overlap_px) == (128, 32) and model.click_radius_px == 5.0


def test_a_band_first_array_gets_a_hint_to_move_its_axis_and_no_repeated_text(segmenter):
    address, _ = segmenter
    band_first = np.moveaxis(IMAGE, -1, 0)  # (3, 64, 64), what rasterio's read() returns
    with SegmenterClient(address) as client:
        with pytest.raises(InvalidArgument) as raised:
            client.predict(band_first, model="tiny")
        assert client.predict(np.moveaxis(band_first, 0, -1), model="tiny").labels.shape == (64, 64)
    error = raised.value
    assert any(v.field == "image.bands" for v in error.field_violations)
    assert "np.moveaxis(a, 0, -1)" in error.hint and "3 × 64 pixels (height × width)" in error.hint
    text = str(error)
    for violation in error.field_violations:
        assert text.count(violation.description) == 1, text


def test_an_image_with_the_right_layout_but_wrong_bands_gets_no_layout_hint(segmenter):
    address, _ = segmenter
    with SegmenterClient(address) as client:
        with pytest.raises(InvalidArgument) as raised:
            client.predict(np.zeros((64, 64, 4), dtype=np.uint8), model="tiny")
    assert raised.value.hint == "" and "hint" not in str(raised.value)


def test_the_asyncio_client_offers_the_same_calls(segmenter, tiny_manifest):
    address, _ = segmenter

    async def session():
        async with dial_client.aio.SegmenterClient(address) as client:
            await client.wait_until_ready(30)
            ready = await client.is_server_ready()
            model_ready = await client.is_model_ready("tiny"), await client.is_model_ready("absent")
            models = await client.list_models(page_size=1)
            model = await client.get_model("tiny")
            results = await asyncio.gather(*(client.predict(IMAGE, [dial_client.Click(10, 10, 1)], model="tiny",
                                                            return_probabilities=True) for _ in range(3)))
            with pytest.raises(InvalidArgument) as raised:
                await client.predict(np.moveaxis(IMAGE, -1, 0), model="tiny")
            with pytest.raises(dial_client.NotFound):
                await client.get_model("absent")
        return ready, model_ready, models, model, results, raised.value

    ready, model_ready, models, model, results, error = asyncio.run(session())
    assert ready and model_ready == (True, False)
    assert models == [model] and model.class_names == tuple(tiny_manifest.class_names)
    with SegmenterClient(address) as blocking:
        expected = blocking.predict(IMAGE, [dial_client.Click(10, 10, 1)], model="tiny", return_probabilities=True)
    for result in results:
        np.testing.assert_array_equal(result.labels, expected.labels)
        assert result.probabilities.shape == expected.probabilities.shape
    assert "np.moveaxis" in error.hint and error.field_violations


def test_the_asyncio_client_waits_for_a_server_that_is_not_there_until_its_deadline(free_port):
    async def call():
        async with dial_client.aio.SegmenterClient(f"127.0.0.1:{free_port}", timeout=1.0) as client:
            assert not await client.is_server_ready()
            await client.get_model("tiny")

    began = time.monotonic()
    with pytest.raises(dial_client.DeadlineExceeded):
        asyncio.run(call())
    assert time.monotonic() - began >= 0.9


def test_models_run_by_torch_report_their_provider_in_onnx_runtime_words(tiny_manifest):
    """The adapter and acquisition run torch models; clients see the same provider names the segmenter sends."""
    import torch

    from dial.inference.predictors import PROVIDER_ORDER, TorchPredictor

    predictor = TorchPredictor(torch.nn.Linear(1, 1), tiny_manifest)
    assert predictor.provider == "CPUExecutionProvider" and predictor.provider in PROVIDER_ORDER


def test_the_qgis_plugins_check_reports_an_absent_server_at_once(free_port, monkeypatch):
    from tests.support.paths import REPO_ROOT

    monkeypatch.syspath_prepend(str(REPO_ROOT / "clients" / "qgis"))
    from dial_qgis.connection import ConnectionSettings, health_check

    settings = ConnectionSettings(segmenter=f"127.0.0.1:{free_port}")
    began = time.monotonic()
    with pytest.raises(Unavailable):
        health_check(settings)
    assert time.monotonic() - began < 10  # the client's 30 s deadline was not waited out
