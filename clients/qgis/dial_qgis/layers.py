"""QGIS layers: the class map styled with the model's colours, patch outlines, exported files."""
from __future__ import annotations

from .where_next import window_bounds


def class_map_layer(ws, project, name: str = ""):
    """The class map as a raster layer with the manifest's colours (added once, then reloaded)."""
    from qgis.core import QgsPalettedRasterRenderer, QgsRasterLayer
    from qgis.PyQt.QtGui import QColor

    existing = [layer for layer in project.mapLayers().values() if layer.source() == ws.class_map_path]
    if existing:
        layer = existing[0]
        layer.dataProvider().reloadData()
        layer.triggerRepaint()
        return layer
    layer = QgsRasterLayer(ws.class_map_path, name or f"{ws.model.name} classes")
    classes = [QgsPalettedRasterRenderer.Class(int(i), QColor(colour), label) for i, label, colour in ws.model.classes]
    renderer = QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)
    layer.setRenderer(renderer)
    layer.setOpacity(0.6)
    project.addMapLayer(layer)
    return layer


def refresh(layer) -> None:
    layer.dataProvider().reloadData()
    layer.triggerRepaint()


def patch_outlines(ws, queue, project, layer=None):
    """A memory layer of the patches not yet done, in the image's CRS, with rank and score."""
    from qgis.core import QgsFeature, QgsField, QgsGeometry, QgsRectangle, QgsVectorLayer
    from qgis.PyQt.QtCore import QVariant
    from qgis.PyQt.QtGui import QColor

    if layer is None:
        from qgis.core import QgsCoordinateReferenceSystem

        crs = QgsCoordinateReferenceSystem.fromWkt(ws.grid.crs_wkt)
        layer = QgsVectorLayer(f"Polygon?crs={crs.authid() or 'wkt:' + ws.grid.crs_wkt}", "DIAL where next", "memory")
        layer.dataProvider().addAttributes([QgsField("rank", QVariant.Int), QgsField("score", QVariant.Double)])
        layer.updateFields()
        symbol = layer.renderer().symbol()
        symbol.setColor(QColor(0, 0, 0, 0))  # outlines only: the imagery stays visible
        symbol.symbolLayer(0).setStrokeColor(QColor("#ff00ff"))
        symbol.symbolLayer(0).setStrokeWidth(0.6)
        project.addMapLayer(layer)
    provider = layer.dataProvider()
    provider.truncate()
    features = []
    for rank, score, window in queue.remaining():
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromRect(QgsRectangle(*window_bounds(ws.grid, window))))
        f.setAttributes([rank, score])
        features.append(f)
    provider.addFeatures(features)
    layer.updateExtents()
    layer.triggerRepaint()
    return layer


def add_exports(project, tif: str, gpkg: str):
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    raster = QgsRasterLayer(tif, "DIAL class map (GeoTIFF)")
    vector = QgsVectorLayer(f"{gpkg}|layername=classes", "DIAL classes (GeoPackage)", "ogr")
    project.addMapLayer(raster)
    project.addMapLayer(vector)
    return raster, vector


def rendered_reader(layer, grid):
    """A reader of the layer's pixels as QGIS draws them: (H, W, 3) uint8 RGB at full resolution.

    For imagery whose bands or sample type differ from what the model reads
    (a 16-bit panchromatic image for an 8-bit RGB model, say): the model then
    sees what the user sees, with the layer's own contrast stretch.
    Each call draws with its own copy of the layer, so it is safe in a QgsTask.
    """
    import numpy as np
    from qgis.core import QgsRasterLayer, QgsRectangle

    from .where_next import window_bounds

    source, renderer = layer.source(), layer.renderer().clone()

    def read(row_off: int, col_off: int, height: int, width: int):
        local = QgsRasterLayer(source, "dial-read", "gdal")
        local.setRenderer(renderer.clone())
        block = local.renderer().block(1, QgsRectangle(*window_bounds(grid, (row_off, col_off, height, width))),
                                       width, height)
        argb = np.frombuffer(bytes(block.data()), dtype=np.uint32).reshape(height, width)
        return np.stack([(argb >> shift) & 255 for shift in (16, 8, 0)], axis=-1).astype(np.uint8)

    return read
