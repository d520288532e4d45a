"""What the plugin is working on: the image, the model, the class map and its edit history.

Plain Python over GDAL files, so every job (segment, click, adapt, where
next, export) is a function of a Workspace that tests drive without widgets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import raster_io
from .connection import ConnectionSettings, ModelInfo
from .errors import PluginError


@dataclass
class Edit:
    """One change of the class map: a window before and after, and the click that caused it (if any)."""

    row_off: int
    col_off: int
    before: np.ndarray
    after: np.ndarray
    click: object = None  # a dial_client.MapClick in the image's CRS


@dataclass
class Workspace:
    settings: ConnectionSettings
    image_path: str = ""
    grid: raster_io.Grid | None = None
    model: ModelInfo | None = None
    class_map_path: str = ""
    clicks: list = field(default_factory=list)
    undo_stack: list[Edit] = field(default_factory=list)
    redo_stack: list[Edit] = field(default_factory=list)
    # (row_off, col_off, height, width) -> (H, W, B) pixels; None: the file's own bands
    reader: object = None

    def read_image(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        if self.reader is not None:
            return self.reader(row_off, col_off, height, width)
        return raster_io.read_window(self.image_path, row_off, col_off, height, width)

    def open_image(self, path: str, class_map_folder: str) -> None:
        """Work on the raster at ``path``; its class map is ``<name>.dial-classes.tif`` in ``class_map_folder``."""
        self.image_path = path
        self.grid = raster_io.grid_of(path)
        self.class_map_path = str(Path(class_map_folder) / f"{Path(path).stem}.dial-classes.tif")
        self.clicks.clear()
        self.undo_stack.clear()
        self.redo_stack.clear()

    def require(self) -> tuple[raster_io.Grid, ModelInfo]:
        if self.grid is None:
            raise PluginError("Choose a raster layer first.")
        if self.model is None:
            raise PluginError("Choose a model first: press Check to list the server's models.")
        return self.grid, self.model

    def ensure_class_map(self) -> None:
        grid, model = self.require()
        if not Path(self.class_map_path).exists():
            raster_io.create_class_map(self.class_map_path, grid, model.classes)

    # -- edits -------------------------------------------------------------
    def apply(self, row_off: int, col_off: int, labels: np.ndarray, click=None) -> Edit:
        """Write ``labels`` into the class map at the window, undoably."""
        self.ensure_class_map()
        h, w = labels.shape
        before = raster_io.read_labels(self.class_map_path, row_off, col_off, h, w)
        raster_io.write_labels(self.class_map_path, row_off, col_off, labels)
        edit = Edit(row_off, col_off, before, labels.copy(), click)
        self.undo_stack.append(edit)
        self.redo_stack.clear()
        if click is not None:
            self.clicks.append(click)
        return edit

    def undo(self) -> Edit | None:
        if not self.undo_stack:
            return None
        edit = self.undo_stack.pop()
        raster_io.write_labels(self.class_map_path, edit.row_off, edit.col_off, edit.before)
        if edit.click is not None and self.clicks and self.clicks[-1] is edit.click:
            self.clicks.pop()
        self.redo_stack.append(edit)
        return edit

    def redo(self) -> Edit | None:
        if not self.redo_stack:
            return None
        edit = self.redo_stack.pop()
        raster_io.write_labels(self.class_map_path, edit.row_off, edit.col_off, edit.after)
        if edit.click is not None:
            self.clicks.append(edit.click)
        self.undo_stack.append(edit)
        return edit

    def window_geo(self, row_off: int, col_off: int):
        from dial_client import GeoReference

        return GeoReference(self.grid.crs, self.grid.window_transform(row_off, col_off))
