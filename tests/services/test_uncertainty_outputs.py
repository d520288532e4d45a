"""GetUncertaintyMap's GeoTIFF decodes to the uncertainty from the file itself (its band's scale and offset),
the client keeps value_min/value_max when the map goes to a file, and replacing a file is opt-in."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import rasterio

from dial.imagery.georef import GeoReference
from dial.imagery.raster import GeoTiffWriter
from dial_client import AcquisitionClient
from dial_client.errors import AlreadyExists
from tests.support.synthetic import make_scene

GEO = GeoReference("EPSG:32633", (0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0))


@pytest.fixture()
def acquisition(tiny_repo, raster_root):
    from dial_services.acquisition.main import AcquisitionConfig, start

    running = start(AcquisitionConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, raster_roots=(raster_root,),
                                      provider="cpu", session_store=raster_root.parent / "no-sessions",
                                      job_store=raster_root.parent / "queue-jobs"))
    with AcquisitionClient(f"127.0.0.1:{running.port}", timeout=120, retries=0) as client:
        yield client
    running.stop(0)


def test_the_uncertainty_geotiff_decodes_itself_and_the_client_keeps_its_range(acquisition, raster_root):
    image = make_scene(160, 160, seed=4).image
    path = raster_root / "scene.tif"
    with GeoTiffWriter(path, height=160, width=160, bands=image.shape[2], dtype="uint8", geo=GEO) as writer:
        writer.write(image, 0, 0)
    inline = acquisition.uncertainty_map(str(path), model="tiny", strategy="entropy")
    out = raster_root / "entropy.tif"
    written = acquisition.uncertainty_map(str(path), model="tiny", strategy="entropy", output_uri=str(out))
    assert written.values is None
    assert written.value_min == pytest.approx(float(inline.values.min()), abs=1e-6)
    assert written.value_max == pytest.approx(float(inline.values.max()), abs=1e-6)
    assert written.value_min < written.value_max
    with rasterio.open(out) as ds:
        scale, offset = ds.scales[0], ds.offsets[0]
        decoded = ds.read(1) * scale + offset
    assert offset == pytest.approx(written.value_min) and offset + 255 * scale == pytest.approx(written.value_max)
    np.testing.assert_allclose(decoded, inline.values, atol=1e-5)
    info = json.loads(subprocess.run(["gdalinfo", "-json", str(out)], check=True, capture_output=True, text=True,
                                     timeout=60).stdout)
    assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
    assert info["bands"][0]["scale"] == pytest.approx(scale) and info["bands"][0]["offset"] == pytest.approx(offset)

    before = out.read_bytes()
    with pytest.raises(AlreadyExists, match="overwrite"):
        acquisition.uncertainty_map(str(path), model="tiny", strategy="margin", output_uri=str(out))
    assert out.read_bytes() == before
    acquisition.uncertainty_map(str(path), model="tiny", strategy="margin", output_uri=str(out), overwrite=True)
    assert out.read_bytes() != before
