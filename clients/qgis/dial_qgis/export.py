"""Export: the class map as a GeoTIFF and as GeoPackage polygons with class names."""
from __future__ import annotations

from pathlib import Path

from .errors import PluginError
from .workspace import Workspace


def export(ws: Workspace, folder: str) -> tuple[str, str]:
    """Write ``<image>-classes.tif`` and ``<image>-classes.gpkg`` (layer ``classes``: class_id, class_name) into ``folder``.

    Polygons are GDAL's: one per 4-connected region of a class, holes kept,
    unsegmented pixels (255) left out, in the image's CRS.
    """
    from osgeo import gdal, ogr, osr

    grid, model = ws.require()
    if not Path(ws.class_map_path).exists():
        raise PluginError("Nothing to export yet: segment the layer first.")
    gdal.UseExceptions()
    # Named apart from the working class map (<image>.dial-classes.tif), which may share the folder.
    stem = f"{Path(ws.image_path).stem}-classes"
    tif, gpkg = str(Path(folder) / f"{stem}.tif"), str(Path(folder) / f"{stem}.gpkg")
    gdal.Translate(tif, ws.class_map_path, creationOptions=["TILED=YES", "COMPRESS=DEFLATE"])
    source = gdal.Open(tif)
    band = source.GetRasterBand(1)
    if Path(gpkg).exists():
        Path(gpkg).unlink()
    out = ogr.GetDriverByName("GPKG").CreateDataSource(gpkg)
    srs = osr.SpatialReference()
    srs.ImportFromWkt(grid.crs_wkt)
    layer = out.CreateLayer("classes", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
    name_field = ogr.FieldDefn("class_name", ogr.OFTString)
    layer.CreateField(name_field)
    gdal.Polygonize(band, band.GetMaskBand(), layer, 0, [])
    names = dict((i, n) for i, n, _ in model.classes)
    layer.StartTransaction()
    for feature in layer:
        feature.SetField("class_name", names.get(feature.GetField("class_id"), f"class_{feature.GetField('class_id')}"))
        layer.SetFeature(feature)
    layer.CommitTransaction()
    out = None
    source = None
    return tif, gpkg
