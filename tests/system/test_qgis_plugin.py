"""End to end: the QGIS plugin, installed from its zip into a real headless QGIS, against `dial serve` processes.

QGIS runs on its own Python (Debian's /usr/bin/python3), not this project's
virtualenv, so the session runs as a child process: clients/qgis/tests/qgis_session.py.
The plugin zip is built by the same script `make qgis-plugin` runs, unzipped
into a QGIS profile's plugin folder, and loaded by QGIS's own plugin loader.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT, SHARED_DATA

QGIS_PYTHON = os.environ.get("DIAL_QGIS_PYTHON", "/usr/bin/python3")
IMAGE = SHARED_DATA / "spacenet" / "images" / "road_mask_input.tif"
SESSION = REPO_ROOT / "clients" / "qgis" / "tests" / "qgis_session.py"
SCREENSHOT = REPO_ROOT / "clients" / "qgis" / "docs" / "session.png"


def require_qgis() -> None:
    """QGIS is part of the test environment (.ci/run installs it): its absence fails, it is never skipped."""
    probe = subprocess.run([QGIS_PYTHON, "-c", "import qgis.core, osgeo.gdal"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail(f"QGIS's Python ({QGIS_PYTHON}) cannot import qgis: install Debian's QGIS with "
                    "`apt-get install -y --no-install-recommends qgis python3-qgis` (.ci/run does). "
                    f"{probe.stderr.strip()[-300:]}", pytrace=False)


@pytest.fixture(scope="module")
def plugins_folder(tmp_path_factory) -> Path:
    """The zip from clients/qgis/build.py, installed as QGIS's "Install from ZIP" does: unzipped into python/plugins."""
    require_qgis()
    out = tmp_path_factory.mktemp("plugin-zip")
    built = subprocess.run([sys.executable, str(REPO_ROOT / "clients" / "qgis" / "build.py"), "--out", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    archive = Path(built.stdout.strip().splitlines()[-1])
    plugins = tmp_path_factory.mktemp("profile") / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        assert all(n.startswith("dial_qgis/") for n in names)
        assert not any("torch" in n for n in names)
        z.extractall(plugins)
    return plugins


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A segmenter and an acquisition server on the shipped landcover model."""
    from tests.support.processes import ServiceProcess

    assert IMAGE.is_file(), f"{IMAGE} is missing: the shared data belongs at ../shared/data"
    cache = tmp_path_factory.mktemp("model-cache")
    common = ["--model-repo", str(REPO_ROOT / "models"), "--model-cache", str(cache)]
    segmenter = ServiceProcess("segmenter", common)
    acquisition = ServiceProcess("acquisition", [*common, "--job-store", str(tmp_path_factory.mktemp("jobs")),
                                                 "--session-store", str(tmp_path_factory.mktemp("sessions"))])
    try:
        segmenter.wait_serving()
        acquisition.wait_serving()
        yield segmenter, acquisition
    finally:
        segmenter.stop()
        acquisition.stop()


def qgis_session(plugins_folder: Path, servers, home: Path, work: Path, *extra: str, timeout: float) -> dict:
    """Run clients/qgis/tests/qgis_session.py in QGIS's own Python against ``servers``; its report."""
    segmenter, acquisition = servers
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(home), XDG_RUNTIME_DIR=str(home))
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    run = subprocess.run(
        [QGIS_PYTHON, str(SESSION), "--plugins", str(plugins_folder), "--image", str(IMAGE),
         "--segmenter", segmenter.address, "--acquisition", acquisition.address, "--model", "landcover",
         "--work", str(work), *extra], capture_output=True, text=True, timeout=timeout, env=env, cwd=home)
    lines = [line for line in run.stdout.splitlines() if line.startswith("REPORT ")]
    assert run.returncode == 0 and lines, f"QGIS session failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    return json.loads(lines[-1].removeprefix("REPORT "))


def test_a_user_segments_clicks_undoes_and_exports_in_qgis(plugins_folder, servers, tmp_path):
    import pyogrio
    import pyogrio.raw
    import rasterio

    work = tmp_path / "session"
    report = qgis_session(plugins_folder, servers, tmp_path, work, timeout=240)

    # the plugin ran on its vendored client, in QGIS's Python, with a project CRS unlike the layer's
    assert "/dial_qgis/vendor/dial_client/" in report["dial_client_from"]
    assert report["layer_crs"] == "EPSG:4326" and report["project_crs"] == "EPSG:3857"
    assert any(label.startswith("landcover:") and "(CPU" in label for label in report["models"])

    # segmenting filled the whole class map, with progress, styled with the manifest's colours
    assert report["segmented_px"] == 1300 * 1300
    assert report["segment_progress_updates"] >= 1
    name, version = report["model"].split(":")
    manifest = json.loads((REPO_ROOT / "models" / name / version / "manifest.json").read_text())
    assert report["class_layer_colours"] == {c["name"]: c["colour"].lower() for c in manifest["classes"]}

    # the click went through the canvas CRS to the right ground position, and changed the map around it
    click, clicked = report["click"], report["clicked"]
    assert click["event_map_point"] == pytest.approx(click["canvas_xy"], abs=2.0)  # metres: within a screen pixel
    assert clicked["clicks"] == 1 and clicked["changed_px"] > 0
    row, col = click["row"], click["col"]
    r0, c0, h, w = clicked["edit_window"]
    assert r0 <= row < r0 + h and c0 <= col < c0 + w
    assert r0 <= clicked["changed_rows"][0] and clicked["changed_rows"][1] < r0 + h
    assert c0 <= clicked["changed_cols"][0] and clicked["changed_cols"][1] < c0 + w
    assert clicked["clicked_class_px_within_8px"] > 0
    assert clicked["class_at_ground_before"] != click["class_id"]

    # undo restores the map exactly and drops the click; redo brings both back
    assert report["undo"] == {"restored": True, "clicks": 0, "edit": True}
    assert report["redo"] == {"same_as_after": True, "clicks": 1}

    # where next: outlines, zoom to the best patch, done takes it out
    nxt = report["where_next"]
    assert nxt["patches"] >= 2 and nxt["outlines_after_done"] == nxt["patches"] - 1
    assert nxt["done"] == nxt["first"] and nxt["next_after_done"] != nxt["first"]
    pr, pc, ph, pw = nxt["first"]
    crow, ccol = nxt["canvas_centre_pixel"]
    assert pr <= crow <= pr + ph and pc <= ccol <= pc + pw

    # export: a GeoPackage in the layer's CRS with the manifest's class names, both files in the project
    exported = report["export"]
    assert pyogrio.read_info(exported["gpkg"], layer="classes")["crs"] == "EPSG:4326"
    _, _, _, (class_ids, class_names) = pyogrio.raw.read(exported["gpkg"], layer="classes", read_geometry=False,
                                                         columns=["class_id", "class_name"])
    names = [c["name"] for c in manifest["classes"]]
    assert len(class_ids) == exported["features"] > 0
    assert set(class_names) <= set(names)
    assert all(name == names[class_id] for class_id, name in zip(class_ids.tolist(), class_names.tolist()))
    with rasterio.open(IMAGE) as image:
        height, width, pixel_area = image.height, image.width, abs(image.transform.a * image.transform.e)
    assert exported["area_sq_deg"] == pytest.approx(height * width * pixel_area, rel=1e-6)
    assert {"DIAL class map (GeoTIFF)", "DIAL classes (GeoPackage)"} <= set(exported["layers_in_project"])

    # a server error is one actionable message, no traceback
    level, text = report["error_message"][-1]
    assert "no-such-model" in text and "Traceback" not in text and "Press Check" in text

    # the documentation's screenshot comes from this session
    if os.environ.get("DIAL_UPDATE_SCREENSHOT"):
        shutil.copy(work / "window.png", SCREENSHOT)



@pytest.fixture(scope="module")
def adapter_server(tmp_path_factory):
    """An Adapter on the shipped models, whose raster roots do not hold the test image."""
    from tests.support.processes import ServiceProcess

    adapter = ServiceProcess("adapter", [
        "--model-repo", str(REPO_ROOT / "models"), "--model-cache", str(tmp_path_factory.mktemp("adapter-cache")),
        "--session-store", str(tmp_path_factory.mktemp("adapter-sessions")),
        "--raster-roots", str(tmp_path_factory.mktemp("adapter-rasters")),
        # Two short steps on small crops: the test checks the plugin's session, not DISCA's quality.
        "--adaptation-steps", "2", "--crop-px", "128", "--max-crops", "2"])
    try:
        adapter.wait_serving()
        yield adapter
    finally:
        adapter.stop()


def test_a_users_adaptation_session_outlives_the_plugin_and_the_project(plugins_folder, servers, adapter_server,
                                                                        tmp_path):
    report = qgis_session(plugins_folder, servers, tmp_path, tmp_path / "session", "--scenario", "adapt",
                          "--adapter", adapter_server.address, timeout=600)
    assert "/dial_qgis/vendor/dial_client/" in report["dial_client_from"]

    # a session on the visible window, its id kept in the project; adapting without clicks says what to do
    adapt = report["adapt"]
    assert adapt["kept_in_project"] == adapt["session"] and len(adapt["session"]) == 32
    assert adapt["window"] == adapt["visible_window"] and adapt["window"][2] < 1300
    assert adapt["no_clicks_error"].startswith("PluginError") and "Click on the map" in adapt["no_clicks_message"][1]
    # adaptation ran as a task that reported its progress to the end
    assert adapt["progress"] and adapt["progress"][-1] == 100 and adapt["progress"] == sorted(adapt["progress"])

    # after reloading the plugin and re-reading the project, the same session, with its click and adaptation
    resumed = report["resumed"]
    assert resumed["session"] == adapt["session"]
    assert resumed["clicks"] == 1 and resumed["adaptation_count"] == 1 and resumed["after_adapt"] == 2
    assert any("resumed from the project" in text for text in resumed["messages"])

    # a raster the Adapter may not read: one actionable message, no traceback, the saved session kept
    outside = report["outside_roots"]
    assert outside["session"] is None and outside["kept_in_project"] == adapt["session"]
    level, text = outside["messages"][-1]
    assert "allowed roots" in text and "--raster-roots" in text and "Traceback" not in text
