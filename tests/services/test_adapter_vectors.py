"""ExportSessionVectors: a session's current class map as GeoPackage or GeoJSON polygons, read back with GDAL."""
from __future__ import annotations

import numpy as np
import pytest

from dial_client import AdapterClient, Click
from dial_client.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from tests.services.test_adapter_service import start_adapter

SIZE = 48
PIXEL_M = 0.5
ORIGIN = (500000.0, 4000000.0)


@pytest.fixture()
def scene(tiny_manifest, raster_root):
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(11)
    image = rng.integers(0, 255, (SIZE, SIZE, tiny_manifest.n_bands)).astype("uint8")
    path = raster_root / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", height=SIZE, width=SIZE, count=image.shape[2], dtype="uint8",
                       crs="EPSG:32631", transform=from_origin(*ORIGIN, PIXEL_M, PIXEL_M)) as dst:
        dst.write(np.moveaxis(image, -1, 0))
    return path, image


@pytest.fixture()
def adapter(tiny_repo, tmp_path, raster_root):
    address, running = start_adapter(tiny_repo, tmp_path / "sessions", raster_roots=(raster_root,))
    yield address
    running.stop(0)


def regions(labels: np.ndarray) -> int:
    """4-connected regions of equal class, the features a class map makes."""
    from scipy import ndimage

    return sum(int(ndimage.label(labels == k)[1]) for k in np.unique(labels))


def test_geopackage_holds_the_adapted_map_with_class_names_in_the_images_crs(adapter, scene, raster_root,
                                                                            tiny_manifest):
    import pyogrio
    import shapely

    path, _ = scene
    with AdapterClient(adapter, caller="alice") as client:
        session = client.create_session(str(path), model="tiny", variant="full", steps=3)
        wrong = int((session.predict().labels[20, 20] + 1) % tiny_manifest.n_classes)
        session.add_clicks([Click(20, 20, wrong)])
        session.adapt(steps=4)
        labels = session.predict().labels
        assert labels[20, 20] == wrong  # the export below must be of the adapted map, not the base model's
        out = raster_root / "session.gpkg"
        written = session.export_vectors(str(out))

    assert written.output_uri == str(out) and written.adaptation_count == 1
    assert written.feature_count == regions(labels)
    info = pyogrio.read_info(out)
    assert info["crs"] == "EPSG:32631" and info["features"] == written.feature_count
    _, _, geometry, (class_ids, class_names) = pyogrio.raw.read(out)
    polygons = shapely.from_wkb(geometry)
    assert sorted(set(class_ids.tolist())) == sorted(np.unique(labels).tolist())
    assert [tiny_manifest.class_names[i] for i in class_ids] == class_names.tolist()
    # The polygons tile the scene exactly, in its map units.
    assert shapely.area(polygons).sum() == pytest.approx(SIZE * SIZE * PIXEL_M ** 2)
    minx, miny, maxx, maxy = shapely.total_bounds(polygons)
    assert (minx, maxy) == pytest.approx(ORIGIN)
    assert (maxx, miny) == pytest.approx((ORIGIN[0] + SIZE * PIXEL_M, ORIGIN[1] - SIZE * PIXEL_M))
    # The clicked pixel's centre lies in a polygon of the clicked class.
    centre = shapely.Point(ORIGIN[0] + 20.5 * PIXEL_M, ORIGIN[1] - 20.5 * PIXEL_M)
    assert class_ids[shapely.contains(polygons, centre)].tolist() == [wrong]


def test_geojson_is_wgs84_and_existing_files_are_kept_unless_overwritten(adapter, scene, raster_root):
    import pyogrio

    path, _ = scene
    out = raster_root / "session.geojson"
    with AdapterClient(adapter, caller="alice") as client:
        session = client.create_session(str(path), model="tiny")
        first = session.export_vectors(str(out))
        assert pyogrio.read_info(out)["crs"] == "EPSG:4326"
        assert pyogrio.read_info(out)["features"] == first.feature_count > 0
        out.write_text("kept")
        with pytest.raises(AlreadyExists, match="overwrite"):
            session.export_vectors(str(out))
        assert out.read_text() == "kept"
        assert session.export_vectors(str(out), overwrite=True).feature_count == first.feature_count
        assert pyogrio.read_info(out)["features"] == first.feature_count


def test_bad_outputs_are_refused_and_write_nothing(adapter, scene, raster_root, tmp_path, tiny_manifest):
    path, image = scene
    with AdapterClient(adapter, caller="alice") as client:
        session = client.create_session(str(path), model="tiny")
        with pytest.raises(PermissionDenied, match="outside the allowed raster roots"):
            session.export_vectors(str(tmp_path / "elsewhere.gpkg"))
        with pytest.raises(InvalidArgument, match=r"\.gpkg or \.geojson"):
            session.export_vectors(str(raster_root / "map.shp"))
        with pytest.raises(InvalidArgument, match="output folder does not exist"):
            session.export_vectors(str(raster_root / "missing" / "map.gpkg"))
        with pytest.raises(InvalidArgument, match="simplify"):
            session.export_vectors(str(raster_root / "map.gpkg"), simplify=-1.0)
        # An image sent inline without georeferencing has pixel coordinates, which GeoJSON cannot hold.
        plain = client.create_session(image, model="tiny")
        with pytest.raises(InvalidArgument, match="GeoPackage"):
            plain.export_vectors(str(raster_root / "plain.geojson"))
        assert plain.export_vectors(str(raster_root / "plain.gpkg")).feature_count > 0
    with AdapterClient(adapter, caller="mallory") as other:
        with pytest.raises(NotFound):
            other.get_session(session.name)
        from dial_client import Session

        with pytest.raises(NotFound):
            Session(other, session.info).export_vectors(str(raster_root / "stolen.gpkg"))
    assert sorted(p.name for p in raster_root.iterdir()) == ["plain.gpkg", "scene.tif"]
