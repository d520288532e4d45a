"""The click map tool: a left click adds the palette's class at the clicked ground position."""
from __future__ import annotations

from qgis.gui import QgsMapTool
from qgis.PyQt.QtCore import Qt


class ClickTool(QgsMapTool):
    """Hands (x, y, canvas CRS) of each left click to ``on_click``; the canvas CRS is never assumed to be the image's."""

    def __init__(self, canvas, on_click):
        super().__init__(canvas)
        self._on_click = on_click
        self.setCursor(Qt.CrossCursor)

    def canvasReleaseEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.button() != Qt.LeftButton:
            return
        point = event.mapPoint()
        self._on_click(point.x(), point.y(), self.canvas().mapSettings().destinationCrs())
