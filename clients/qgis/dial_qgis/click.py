"""Click: a correction at a map point, refined by AC on the window around it."""
from __future__ import annotations

from .errors import PluginError
from .workspace import Workspace


def to_image_crs(x: float, y: float, source_crs, image_crs):
    """(x, y) from ``source_crs`` (the canvas's) to the image's CRS, with QGIS's own transform."""
    from qgis.core import QgsCoordinateTransform, QgsPointXY, QgsProject

    point = QgsCoordinateTransform(source_crs, image_crs, QgsProject.instance()).transform(QgsPointXY(x, y))
    return point.x(), point.y()


def click(ws: Workspace, x: float, y: float, class_id: int) -> tuple[int, int, int, int]:
    """A click at (x, y) in the image's CRS: predict the model's tile around it and write it; returns the window."""
    from dial_client import MapClick

    grid, model = ws.require()
    if not 0 <= class_id < len(model.classes):
        raise PluginError("Choose a class in the palette first.")
    row, col = grid.pixel(x, y)
    if not (0 <= row < grid.height and 0 <= col < grid.width):
        raise PluginError("The click is outside the raster layer.")
    half = model.tile_px // 2
    row_off, col_off, height, width = grid.clip(int(row) - half, int(col) - half, model.tile_px, model.tile_px)
    new = MapClick(x, y, class_id, grid.crs)
    inside = []
    for c in [*ws.clicks, new]:
        r, k = grid.pixel(c.x, c.y)
        if row_off <= r < row_off + height and col_off <= k < col_off + width:
            inside.append(c)
    image = ws.read_image(row_off, col_off, height, width)
    with ws.settings.segmenter_client() as client:
        result = client.predict(image, inside, model=model.name, version=model.version,
                                geo=ws.window_geo(row_off, col_off))
    ws.apply(row_off, col_off, result.labels, click=new)
    return row_off, col_off, height, width
