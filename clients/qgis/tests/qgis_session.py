"""One annotation session in a real, headless QGIS, driven as a user would; prints a JSON report.

Run with QGIS's Python (Debian: /usr/bin/python3) and QT_QPA_PLATFORM=offscreen:

    qgis_session.py --plugins DIR --image TIF --segmenter HOST:PORT --acquisition HOST:PORT --model NAME --work DIR

``--plugins`` is a QGIS profile's python/plugins folder holding the
unzipped plugin zip, exactly as QGIS's "Install from ZIP" leaves it. The
project's CRS is set to Web Mercator, unlike the layer's, so that the click
goes through QGIS's coordinate transform. Screenshots of the canvas and the
panel go to ``--work``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    for flag in ("--plugins", "--image", "--segmenter", "--acquisition", "--model", "--work"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--click-class", default="Road")
    # "annotate": segment, click, undo, where next, export. "adapt": a DISCA session through the Adapter
    # that outlives a reload of the plugin and of the project, and a refused server-side read.
    parser.add_argument("--scenario", choices=("annotate", "adapt"), default="annotate")
    parser.add_argument("--adapter", default="")
    args = parser.parse_args()
    work = Path(args.work)

    from qgis.core import (QgsApplication, QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsPointXY,
                           QgsProject, QgsRasterLayer, QgsVectorLayer)
    from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMessageBar
    from qgis.PyQt.QtCore import QEvent, QPoint, QSize, Qt
    from qgis.PyQt.QtWidgets import QMainWindow

    app = QgsApplication([], True)
    app.initQgis()
    report: dict = {"messages": []}

    class Bar(QgsMessageBar):
        def pushMessage(self, title, text, level=0, duration=0):  # noqa: N802
            report["messages"].append([int(level), text])
            return super().pushMessage(title, text, level, duration)

    window = QMainWindow()
    canvas = QgsMapCanvas(window)
    window.setCentralWidget(canvas)
    window.resize(1100, 700)
    bar = Bar(window)

    class Iface:
        """The part of QgisInterface the plugin uses, over a real canvas and message bar."""

        def mapCanvas(self): return canvas  # noqa: E704,N802
        def messageBar(self): return bar  # noqa: E704,N802
        def mainWindow(self): return window  # noqa: E704,N802
        def addToolBarIcon(self, action): pass  # noqa: E704,N802
        def removeToolBarIcon(self, action): pass  # noqa: E704,N802
        def addPluginToRasterMenu(self, name, action): pass  # noqa: E704,N802
        def removePluginRasterMenu(self, name, action): pass  # noqa: E704,N802
        def addDockWidget(self, area, dock): window.addDockWidget(area, dock)  # noqa: E704,N802
        def removeDockWidget(self, dock): window.removeDockWidget(dock)  # noqa: E704,N802

    import qgis.utils

    qgis.utils.iface = Iface()
    qgis.utils.plugin_paths[:] = [args.plugins]
    sys.path.insert(0, args.plugins)  # as QGIS does for its plugin folders at start-up
    qgis.utils.updateAvailablePlugins()
    assert "dial_qgis" in qgis.utils.available_plugins, qgis.utils.available_plugins
    assert qgis.utils.loadPlugin("dial_qgis") and qgis.utils.startPlugin("dial_qgis"), "the plugin did not start"
    plugin = qgis.utils.plugins["dial_qgis"]

    project = QgsProject.instance()
    project.setFileName(str(work / "session.qgz"))
    layer = QgsRasterLayer(args.image, Path(args.image).stem)
    assert layer.isValid(), f"QGIS cannot open {args.image}"
    project.addMapLayer(layer)
    mercator = QgsCoordinateReferenceSystem("EPSG:3857")
    project.setCrs(mercator)
    canvas.setDestinationCrs(mercator)
    canvas.setLayers([layer])
    window.show()
    to_canvas = QgsCoordinateTransform(layer.crs(), mercator, project)
    canvas.setExtent(to_canvas.transformBoundingBox(layer.extent()))
    canvas.refresh()
    canvas.waitWhileRendering()
    report["layer_crs"], report["project_crs"] = layer.crs().authid(), project.crs().authid()

    # Connect: the panel's fields, then Check.
    dock = plugin.toggle(True)
    dock.segmenter.setText(args.segmenter)
    dock.acquisition.setText(args.acquisition)
    if args.adapter:
        dock.adapter.setText(args.adapter)
    dock.layer.setLayer(layer)
    dock.check()
    controller = plugin.controller
    report["models"] = [m.label for m in controller.models]
    dock.choose_model(next(m.label for m in controller.models if m.name == args.model))
    ws = controller.ws
    report["model"] = f"{ws.model.name}:{ws.model.version}"
    if args.scenario == "adapt":
        adapt_scenario(app, plugin, project, layer, canvas, mercator, report, args)
        print("REPORT " + json.dumps(report), flush=True)
        os._exit(0)

    # Segment the whole layer as a QgsTask, waiting as the event loop would.
    finished = {}
    started = time.monotonic()
    progress = []
    task = controller.segment(visible=False, on_done=lambda result, error: finished.update(result=result, error=error))
    assert task is not None, report["messages"]
    task.progressChanged.connect(progress.append)
    while "result" not in finished:
        app.processEvents()
        time.sleep(0.02)
        assert time.monotonic() - started < 120, "segmentation took over 120 s"
    assert finished["error"] is None, report["messages"]
    report["segment_s"] = round(time.monotonic() - started, 2)
    report["segment_progress_updates"] = len(progress)
    report["class_layer_colours"] = {
        c.label: c.color.name() for c in controller.class_layer.renderer().classes()}

    from dial_qgis import raster_io

    grid = ws.grid
    before = raster_io.read_labels(ws.class_map_path, 0, 0, grid.height, grid.width)
    report["segmented_px"] = int((before != raster_io.NODATA).sum())

    # The ground position to click: a pixel whose class is not the palette's, away from the edges.
    class_id = next(int(i) for i, name, _ in ws.model.classes if name == args.click_class)
    candidates = [(r, c) for r in range(300, grid.height - 300, 37) for c in range(300, grid.width - 300, 41)
                  if before[r, c] != class_id]
    row, col = candidates[len(candidates) // 2]
    ground = grid.xy(row + 0.5, col + 0.5)  # in the layer's CRS (degrees)
    on_canvas = to_canvas.transform(QgsPointXY(*ground))
    pixel = canvas.getCoordinateTransform().transform(on_canvas)
    report["click"] = {"row": row, "col": col, "class_id": class_id, "ground_lon_lat": list(ground),
                       "canvas_xy": [on_canvas.x(), on_canvas.y()]}

    # Click through the map tool with a mouse event on the canvas.
    dock.palette.button(class_id).click()
    dock.click_button.click()
    assert canvas.mapTool() is dock.tool
    event = QgsMapMouseEvent(canvas, QEvent.MouseButtonRelease, QPoint(round(pixel.x()), round(pixel.y())),
                             Qt.LeftButton, Qt.LeftButton, Qt.NoModifier)
    report["click"]["event_map_point"] = [event.mapPoint().x(), event.mapPoint().y()]
    dock.tool.canvasReleaseEvent(event)
    after = raster_io.read_labels(ws.class_map_path, 0, 0, grid.height, grid.width)
    changed = (after != before)
    rows, cols = changed.nonzero()
    report["clicked"] = {
        "changed_px": int(changed.sum()), "clicks": len(ws.clicks),
        "changed_rows": [int(rows.min()), int(rows.max())] if rows.size else None,
        "changed_cols": [int(cols.min()), int(cols.max())] if cols.size else None,
        "class_at_ground_before": int(before[row, col]), "class_at_ground_after": int(after[row, col]),
        "clicked_class_px_within_8px": int((after[row - 8:row + 9, col - 8:col + 9] == class_id).sum()),
        "edit_window": list(ws.undo_stack[-1].__dict__[k] for k in ("row_off", "col_off")) + list(
            ws.undo_stack[-1].after.shape),
    }
    canvas.refresh()
    canvas.waitWhileRendering()
    canvas.saveAsImage(str(work / "canvas.png"))
    dock.grab().save(str(work / "panel.png"))

    # Undo restores the map; redo brings the click back.
    dock_undo = controller.undo()
    restored = raster_io.read_labels(ws.class_map_path, 0, 0, grid.height, grid.width)
    report["undo"] = {"restored": bool((restored == before).all()), "clicks": len(ws.clicks),
                      "edit": dock_undo is not None}
    controller.redo()
    redone = raster_io.read_labels(ws.class_map_path, 0, 0, grid.height, grid.width)
    report["redo"] = {"same_as_after": bool((redone == after).all()), "clicks": len(ws.clicks)}

    # Where next: ranked patch outlines, next patch zooms, done takes it out.
    queue = controller.rank()
    if queue is not None:
        first = controller.next_patch()
        centre = canvas.extent().center()
        done = controller.mark_done()
        report["where_next"] = {
            "patches": len(queue.patches), "outlines_before_done": len(queue.patches),
            "outlines_after_done": controller.outlines.featureCount(), "first": list(first),
            "done": list(done), "next_after_done": list(controller.queue.next()[2]) if controller.queue.next() else None,
            "canvas_centre_in_layer_crs": list(QgsCoordinateTransform(mercator, layer.crs(), project).transform(
                centre).__iter__()) if hasattr(centre, "__iter__") else None}
        zoomed = QgsCoordinateTransform(mercator, layer.crs(), project).transform(centre)
        report["where_next"]["canvas_centre_pixel"] = list(grid.pixel(zoomed.x(), zoomed.y()))

    # Export: GeoTIFF and GeoPackage, added to the project.
    exported = controller.export(str(work))
    assert exported is not None, report["messages"]
    tif, gpkg = exported
    vector = QgsVectorLayer(f"{gpkg}|layername=classes", "check", "ogr")
    names = sorted({f["class_name"] for f in vector.getFeatures()})
    area = sum(f.geometry().area() for f in vector.getFeatures())
    report["export"] = {
        "tif": tif, "gpkg": gpkg, "features": vector.featureCount(), "crs": vector.crs().authid(),
        "class_names": names, "area_sq_deg": area,
        "layers_in_project": sorted(l.name() for l in project.mapLayers().values()),
    }

    # An error from the server is a message, never a traceback: a model it does not have.
    ws.model = type(ws.model)(**{**ws.model.__dict__, "name": "no-such-model"})
    report["error_message"] = None
    before_messages = len(report["messages"])
    controller.on_map_click(on_canvas.x(), on_canvas.y(), mercator)
    report["error_message"] = report["messages"][before_messages:]

    # The panel and canvas, side by side, for the documentation: class map over the image, patch outlines.
    canvas.setLayers([controller.outlines, controller.class_layer, layer])
    canvas.setExtent(to_canvas.transformBoundingBox(layer.extent()))
    bar.clearWidgets()
    canvas.refresh()
    canvas.waitWhileRendering()
    window.grab().save(str(work / "window.png"))
    report["dial_client_from"] = sys.modules["dial_client"].__file__
    qgis.utils.unloadPlugin("dial_qgis")
    print("REPORT " + json.dumps(report), flush=True)
    # Leave without QGIS's teardown, which crashes headless Qt builds after the work is done.
    os._exit(0)


def wait_for(app, start, seconds: float) -> dict:
    """Start a DialTask with ``start(on_done)`` and run the event loop until it is done; its progress
    values and its error, if any."""
    outcome = {"progress": []}
    task = start(lambda result, error: outcome.update(
        done=True, error=None if error is None else f"{type(error).__name__}: {error}"))
    task.progressChanged.connect(outcome["progress"].append)
    started = time.monotonic()
    while "done" not in outcome:
        app.processEvents()
        time.sleep(0.02)
        assert time.monotonic() - started < seconds, f"{task.description()} took over {seconds} s"
    return outcome


def adapt_scenario(app, plugin, project, layer, canvas, mercator, report, args) -> None:
    """Adapt on the visible window, keep the session in the project, reload plugin and project, resume."""
    import qgis.utils
    from qgis.core import QgsCoordinateTransform, QgsRectangle

    from dial_qgis import where_next

    controller = plugin.controller
    grid = controller.ws.grid
    size = 192
    window = ((grid.height - size) // 2, (grid.width - size) // 2, size, size)
    to_canvas = QgsCoordinateTransform(layer.crs(), mercator, project)
    canvas.setExtent(to_canvas.transformBoundingBox(QgsRectangle(*where_next.window_bounds(grid, window))))
    canvas.refresh()
    canvas.waitWhileRendering()

    session_id = controller.adapt_start(visible=True)
    assert session_id, report["messages"]
    kept, _ = project.readEntry("dial", "adapter/session", "")
    session_window = [int(v) for v in project.readEntry("dial", "adapter/window", "")[0].split(",")]
    # Adapting before any click is refused with a message, not a traceback.
    refused = wait_for(app, lambda done: controller.adapt(on_done=done), 60)
    refusal = report["messages"][-1]

    # One click at the canvas centre (inside the session's window), then Adapt as a task with progress.
    controller.class_id = next(int(i) for i, name, _ in controller.ws.model.classes if name == args.click_class)
    centre = canvas.extent().center()
    assert controller.on_map_click(centre.x(), centre.y(), mercator) is not None, report["messages"]
    first = wait_for(app, lambda done: controller.adapt(on_done=done), 300)
    assert first["error"] is None, (first, report["messages"])
    report["adapt"] = {"session": session_id, "kept_in_project": kept, "window": session_window,
                       "visible_window": list(controller.visible_window()), "no_clicks_error": refused["error"],
                       "no_clicks_message": refusal, "progress": first["progress"]}

    # Save the project, reload the plugin (its modules too) and re-read the project: the session comes back.
    assert project.write(), "the project could not be saved"
    path, layer_name = project.fileName(), layer.name()
    canvas.setLayers([])
    qgis.utils.reloadPlugin("dial_qgis")
    project.clear()
    assert project.read(path), f"QGIS cannot read {path}"
    reread = next(iter(project.mapLayersByName(layer_name)))
    canvas.setLayers([reread])
    plugin = qgis.utils.plugins["dial_qgis"]
    dock = plugin.toggle(True)
    assert plugin.controller is not controller
    before = len(report["messages"])
    dock.segmenter.setText(args.segmenter)
    dock.adapter.setText(args.adapter)
    dock.layer.setLayer(reread)
    dock.check()
    controller = plugin.controller
    dock.choose_model(next(m.label for m in controller.models if m.name == args.model))
    resumed = controller.adapt_resume()
    second = wait_for(app, lambda done: controller.adapt(on_done=done), 300)
    assert second["error"] is None, (second, report["messages"])
    info = controller.adapt_resume()
    report["resumed"] = {"session": resumed.session_id, "clicks": len(resumed.clicks),
                         "adaptation_count": resumed.adaptation_count, "after_adapt": info.adaptation_count,
                         "messages": [text for _, text in report["messages"][before:]]}

    # An Adapter that must read the layer's file itself, which lies outside its raster roots.
    dock.server_reads_file.setChecked(True)
    dock.check()
    before = len(report["messages"])
    report["outside_roots"] = {"session": controller.adapt_start(visible=True),
                               "messages": report["messages"][before:],
                               "kept_in_project": project.readEntry("dial", "adapter/session", "")[0]}
    report["dial_client_from"] = sys.modules["dial_client"].__file__


if __name__ == "__main__":
    sys.exit(main())
