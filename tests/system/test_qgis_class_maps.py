"""A PredictRaster class map opened in a real headless QGIS: its legend lists the model's classes by name (not
0..255), nodata is nodata, and QGIS has the overviews to draw it zoomed out without reading every pixel."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import rasterio
from rasterio.transform import from_origin

from dial_client import SegmenterClient
from tests.support.fixtures import segmenter  # noqa: F401
from tests.support.synthetic import make_scene
from tests.system.test_qgis_plugin import QGIS_PYTHON, require_qgis

OPEN_IN_QGIS = """
import json, os, sys
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from qgis.core import QgsApplication, QgsRasterLayer
app = QgsApplication([], False)
app.initQgis()
layer = QgsRasterLayer(sys.argv[1], "classes")
provider = layer.dataProvider()
print(json.dumps({"valid": layer.isValid(), "renderer": layer.renderer().type(),
                  "legend": [label for label, _ in layer.legendSymbologyItems()],
                  "nodata": provider.sourceNoDataValue(1) if provider.sourceHasNoDataValue(1) else None,
                  "pyramids": len([p for p in provider.buildPyramidList() if p.getExists()])}))
"""


def test_qgis_shows_a_predicted_class_map_with_its_class_names(segmenter, raster_root, tiny_manifest):  # noqa: F811
    require_qgis()
    address, _ = segmenter
    image = make_scene(300, 600, seed=8).image.copy()
    image[image == 0] = 1
    image[:, :200] = 0
    source = raster_root / "scene.tif"
    with rasterio.open(source, "w", driver="GTiff", height=300, width=600, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(400000.0, 5000000.0, 0.5, 0.5), nodata=0) as ds:
        ds.write(np.moveaxis(image, -1, 0))
    out = raster_root / "classes.tif"
    with SegmenterClient(address) as client:
        client.predict_raster(str(source), model="tiny", output_uri=str(out))
    seen = json.loads(subprocess.run([QGIS_PYTHON, "-c", OPEN_IN_QGIS, str(out)], capture_output=True, text=True,
                                     check=True, timeout=120).stdout.strip().splitlines()[-1])
    assert seen["valid"] and seen["renderer"] == "paletted"
    assert seen["legend"] == [c.name for c in tiny_manifest.classes]
    assert seen["nodata"] == 255
    assert seen["pyramids"] >= 1
