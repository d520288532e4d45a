"""The plugin's actions over QGIS objects (project, canvas, layers), without widgets.

The dock's buttons call these methods; the end-to-end test calls them too,
and drives the click through the real map tool.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from . import adapt as adapt_job
from . import click as click_job
from . import export as export_job
from . import layers
from . import segment as segment_job
from . import where_next
from .connection import ConnectionSettings, health_check
from .errors import PluginError, TaskCancelled, log_unexpected, user_message
from .workspace import Workspace


class Controller:
    """``notify(level, text)`` shows a message ("info", "success", "warning"); errors never escape as tracebacks."""

    def __init__(self, project, canvas, notify, settings: ConnectionSettings | None = None):
        self.project, self.canvas, self.notify = project, canvas, notify
        self.ws = Workspace(settings or ConnectionSettings())
        self.models = []
        self.image_layer = None
        self.class_layer = None
        self.queue = where_next.Queue()
        self.outlines = None
        self.class_id = 0
        self.tasks = []  # QgsTask objects must outlive the call that starts them

    # -- guarded calls ---------------------------------------------------------
    def _guard(self, action, *args, address: str = ""):
        try:
            return action(*args)
        except BaseException as error:  # noqa: BLE001 - every failure becomes a message
            self._report(error, address)
            return None

    def _report(self, error: BaseException, address: str = "") -> None:
        import dial_client

        if not isinstance(error, (PluginError, TaskCancelled, dial_client.DialError)):
            log_unexpected(error)
        self.notify("info" if isinstance(error, TaskCancelled) else "warning", user_message(error, address=address))

    # -- connect ---------------------------------------------------------------
    def check(self) -> list:
        """Health check: the server's models and where each runs."""
        models = self._guard(health_check, self.ws.settings, address=self.ws.settings.segmenter)
        if models is None:
            return []
        self.models = models
        self.notify("success", f"Connected to {self.ws.settings.segmenter}: "
                    + ", ".join(m.label for m in models) if models else "the server offers no model")
        return models

    def choose_model(self, label_or_name: str) -> None:
        for m in self.models:
            if label_or_name in (m.label, m.name, f"{m.name}:{m.version}"):
                self.ws.model = m
                self.class_id = min(self.class_id, len(m.classes) - 1)
                self._choose_input()
                return
        self.notify("warning", f"The server has no model {label_or_name!r}; press Check to refresh the list.")

    def _choose_input(self) -> None:
        """The layer's own bands when the model reads them, else the layer as drawn (RGB) for an RGB model."""
        from . import raster_io

        model = self.ws.model
        if model is None or self.image_layer is None:
            return
        bands, dtype = raster_io.band_layout(self.ws.image_path)
        self.ws.reader = None
        if (bands, dtype) == (model.bands, model.input_dtype):
            return
        if (model.bands, model.input_dtype) == (3, "uint8"):
            self.ws.reader = layers.rendered_reader(self.image_layer, self.ws.grid)
            self.notify("info", f"The layer has {bands} {dtype} band(s) and {model.name} reads 3 uint8 bands: "
                                "DIAL sends the layer as it is drawn (RGB, with its contrast stretch).")
        else:
            self.notify("warning", f"The layer has {bands} {dtype} band(s) but {model.name} reads "
                                   f"{model.bands} {model.input_dtype}; choose a model made for this imagery.")

    def choose_layer(self, layer) -> None:
        """Work on a raster layer backed by a GDAL file (a GeoTIFF, say)."""
        source = layer.source() if layer is not None else ""
        if layer is None or layer.providerType() != "gdal" or not Path(source).is_file():
            self.notify("warning", "Choose a raster layer stored in a file (GeoTIFF); DIAL reads its pixels.")
            return
        self.image_layer = layer
        home = self.project.homePath()
        folder = home if home and Path(home).is_dir() else tempfile.mkdtemp(prefix="dial-qgis-")
        self._guard(self.ws.open_image, source, folder)
        self.class_layer = None
        self.queue = where_next.Queue()
        self._choose_input()
        if adapt_job.current(self.ws, self.project) is not None:
            self.adapt_resume()  # a session saved with the project outlives the plugin and QGIS

    def visible_window(self) -> tuple[int, int, int, int] | None:
        """The image window under the canvas's visible extent (canvas CRS -> image CRS with QGIS's transform)."""
        from qgis.core import QgsCoordinateTransform

        if self.image_layer is None:
            return None
        xform = QgsCoordinateTransform(self.canvas.mapSettings().destinationCrs(), self.image_layer.crs(),
                                       self.project)
        box = xform.transformBoundingBox(self.canvas.extent())
        return segment_job.pixel_window(self.ws.grid, (box.xMinimum(), box.yMinimum(), box.xMaximum(),
                                                       box.yMaximum()))

    # -- segment ---------------------------------------------------------------
    def segment(self, visible: bool = False, on_done=None):
        """Start segmentation as a QgsTask; returns the task (None when it cannot start)."""
        from qgis.core import QgsApplication

        from .tasks import DialTask

        try:
            self.ws.require()
            window = self.visible_window() if visible else None
            self.ws.ensure_class_map()
        except BaseException as error:  # noqa: BLE001
            self._report(error)
            return None

        def work(progress, cancelled):
            return segment_job.segment(self.ws, window, progress=progress, cancelled=cancelled)

        def done(result, error):
            self.tasks = [t for t in self.tasks if t is not task]
            if error is not None:
                self._report(error, self.ws.settings.segmenter)
            else:
                self._show_class_map()
                self.notify("success", f"Segmented {result[3]} x {result[2]} pixels with {self.ws.model.label}.")
            if on_done is not None:
                on_done(result, error)

        task = DialTask(f"DIAL: segmenting {Path(self.ws.image_path).name}", work, done)
        self.tasks.append(task)
        QgsApplication.taskManager().addTask(task)
        return task

    def _show_class_map(self) -> None:
        if self.class_layer is None:
            self.class_layer = layers.class_map_layer(self.ws, self.project)
        else:
            layers.refresh(self.class_layer)

    # -- click -----------------------------------------------------------------
    def on_map_click(self, x: float, y: float, canvas_crs):
        """A click from the map tool, in the canvas CRS; AC refines the window around it at once."""
        def run():
            if self.image_layer is None:
                raise PluginError("Choose a raster layer first.")
            ix, iy = click_job.to_image_crs(x, y, canvas_crs, self.image_layer.crs())
            window = click_job.click(self.ws, ix, iy, self.class_id)
            self._show_class_map()
            return window

        return self._guard(run, address=self.ws.settings.segmenter)

    def undo(self):
        edit = self._guard(self.ws.undo)
        if edit is not None and self.class_layer is not None:
            layers.refresh(self.class_layer)
        return edit

    def redo(self):
        edit = self._guard(self.ws.redo)
        if edit is not None and self.class_layer is not None:
            layers.refresh(self.class_layer)
        return edit

    # -- adapt -----------------------------------------------------------------
    def adapt_start(self, visible: bool = True):
        def run():
            window = self.visible_window() if visible else None
            session = adapt_job.start(self.ws, self.project, window)
            self.notify("success", f"Adaptation session {session} started; it is saved with the project.")
            return session

        return self._guard(run, address=self.ws.settings.adapter)

    def adapt_resume(self):
        """The adaptation session this project keeps for the layer, as the server has it (None: none)."""
        def run():
            info = adapt_job.resume(self.ws, self.project)
            if info is not None:
                self.notify("info", f"Adaptation session {info.session_id} resumed from the project: "
                                    f"{len(info.clicks)} click(s), adapted {info.adaptation_count} time(s).")
            return info

        return self._guard(run, address=self.ws.settings.adapter)

    def adapt(self, on_done=None):
        from qgis.core import QgsApplication

        from .tasks import DialTask

        def work(progress, cancelled):
            return adapt_job.adapt(self.ws, self.project, progress=progress, cancelled=cancelled)

        def done(result, error):
            self.tasks = [t for t in self.tasks if t is not task]
            if error is not None:
                self._report(error, self.ws.settings.adapter)
            else:
                self._show_class_map()
                self.notify("success", "Adapted to your clicks; the session's map is drawn.")
            if on_done is not None:
                on_done(result, error)

        task = DialTask("DIAL: adapting the model to your clicks", work, done)
        self.tasks.append(task)
        QgsApplication.taskManager().addTask(task)
        return task

    # -- where next ------------------------------------------------------------
    def rank(self, visible: bool = False):
        def run():
            window = self.visible_window() if visible else None
            where_next.rank(self.ws, self.queue, window)
            self.outlines = layers.patch_outlines(self.ws, self.queue, self.project, self.outlines)
            return self.queue

        return self._guard(run, address=self.ws.settings.acquisition)

    def next_patch(self):
        """Zoom to the best patch not yet done; returns its window."""
        from qgis.core import QgsCoordinateTransform, QgsRectangle

        patch = self.queue.next()
        if patch is None:
            self.notify("info", "Every ranked patch is done; rank again for more.")
            return None
        xform = QgsCoordinateTransform(self.image_layer.crs(), self.canvas.mapSettings().destinationCrs(),
                                       self.project)
        box = xform.transformBoundingBox(QgsRectangle(*where_next.window_bounds(self.ws.grid, patch[2])))
        self.canvas.setExtent(box)
        self.canvas.refresh()
        return patch[2]

    def mark_done(self):
        patch = self.queue.next()
        if patch is None:
            return None
        self.queue.mark_done(patch[2])
        if self.outlines is not None:
            layers.patch_outlines(self.ws, self.queue, self.project, self.outlines)
        return patch[2]

    # -- export ----------------------------------------------------------------
    def export(self, folder: str):
        def run():
            tif, gpkg = export_job.export(self.ws, folder)
            layers.add_exports(self.project, tif, gpkg)
            self.notify("success", f"Exported {Path(tif).name} and {Path(gpkg).name} to {folder}.")
            return tif, gpkg

        return self._guard(run)
