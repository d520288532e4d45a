"""PredictRaster's inputs: a pixel window or a map AOI of the raster, source bands mapped and rescaled to the
model's, the real single-band 11-bit SpaceNet GeoTIFF end to end, and remote rasters behind an allow-list."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from tests.support.synthetic import make_scene
from dial_client import Click, SegmenterClient
from dial_client.errors import InvalidArgument
from tests.support.paths import SHARED_DATA

SPACENET = SHARED_DATA / "spacenet" / "images" / "road_mask_input.tif"
ORIGIN = (400000.0, 5000000.0)
PIXEL_M = 0.5


def _write(path, image, crs="EPSG:32633"):
    transform = from_origin(*ORIGIN, PIXEL_M, PIXEL_M)
    with rasterio.open(path, "w", driver="GTiff", height=image.shape[0], width=image.shape[1],
                       count=image.shape[2], dtype=image.dtype.name, crs=crs, transform=transform) as ds:
        ds.write(np.moveaxis(image, -1, 0))
    return transform


@pytest.fixture()
def scene_tif(raster_root):
    scene = make_scene(200, 240, seed=11)
    path = raster_root / "scene.tif"
    return path, scene.image, _write(path, scene.image)


def _fields(error: InvalidArgument) -> dict[str, str]:
    return {v.field: v.description for v in error.field_violations}


def test_a_window_is_segmented_alone_with_its_own_transform(segmenter, scene_tif, raster_root):
    address, _ = segmenter
    path, image, transform = scene_tif
    window = (40, 60, 100, 120)
    out = raster_root / "window.tif"
    with SegmenterClient(address) as client:
        result = client.predict_raster(str(path), model="tiny", output_uri=str(out), window=window,
                                       clicks=[Click(90, 100, 2)])
        # The same pixels sent on their own, the click moved into their coordinates.
        alone = client.predict_raster(image[40:140, 60:180], model="tiny", clicks=[Click(50, 40, 2)]).labels
    assert result.window == window and (result.height, result.width) == (100, 120)
    with rasterio.open(out) as ds:
        assert (ds.height, ds.width) == (100, 120)
        assert ds.transform == transform @ rasterio.Affine.translation(60, 40)
        np.testing.assert_array_equal(ds.read(1), alone)


def test_an_aoi_in_map_coordinates_covers_the_pixels_it_touches(segmenter, scene_tif):
    address, _ = segmenter
    path, image, _ = scene_tif
    x0, y0 = ORIGIN
    # Columns 60..179 and rows 40..139: the AOI's edges fall inside those pixels, not on their borders.
    aoi = (x0 + 60.2 * PIXEL_M, y0 - 139.7 * PIXEL_M, x0 + 179.6 * PIXEL_M, y0 - 40.1 * PIXEL_M)
    lon_lat = transform_bounds("EPSG:32633", "EPSG:4326", *aoi, densify_pts=21)
    with SegmenterClient(address) as client:
        by_window = client.predict_raster(str(path), model="tiny", window=(40, 60, 100, 120))
        by_aoi = client.predict_raster(str(path), model="tiny", aoi=aoi)
        by_lon_lat = client.predict_raster(str(path), model="tiny", aoi=lon_lat, aoi_crs="EPSG:4326")
    assert by_aoi.window == (40, 60, 100, 120)
    np.testing.assert_array_equal(by_aoi.labels, by_window.labels)
    assert by_aoi.geo.transform[2:3] == (x0 + 60 * PIXEL_M,)
    # Reprojected, the rectangle's bounding box reaches a little further, never less far.
    r, c, h, w = by_lon_lat.window
    assert r <= 40 and c <= 60 and r + h >= 140 and c + w >= 180 and h <= 104 and w <= 124


def test_an_aoi_overhanging_the_raster_is_cut_at_its_edge(segmenter, scene_tif):
    address, _ = segmenter
    path, _, _ = scene_tif
    x0, y0 = ORIGIN
    with SegmenterClient(address) as client:
        result = client.predict_raster(str(path), model="tiny", aoi=(x0 - 50, y0 - 20, x0 + 30, y0 + 50))
    assert result.window == (0, 0, 40, 60) and result.labels.shape == (40, 60)


def test_areas_outside_the_raster_are_refused_naming_its_extent(segmenter, scene_tif):
    address, _ = segmenter
    path, _, _ = scene_tif
    x0, y0 = ORIGIN
    with SegmenterClient(address) as client:
        with pytest.raises(InvalidArgument) as missed:
            client.predict_raster(str(path), model="tiny", aoi=(x0 - 500, y0 - 500, x0 - 400, y0 - 400))
        with pytest.raises(InvalidArgument) as outside:
            client.predict_raster(str(path), model="tiny", window=(150, 0, 100, 10))
        with pytest.raises(InvalidArgument) as inverted:
            client.predict_raster(str(path), model="tiny", aoi=(x0 + 10, y0 - 10, x0, y0))
        with pytest.raises(InvalidArgument) as click_outside:
            client.predict_raster(str(path), model="tiny", window=(0, 0, 50, 50), clicks=[Click(60, 10, 1)])
    assert missed.value.code == grpc.StatusCode.INVALID_ARGUMENT
    message = _fields(missed.value)["header.aoi"]
    assert f"({x0}, {y0 - 200 * PIXEL_M}, {x0 + 240 * PIXEL_M}, {y0})" in message and "EPSG:32633" in message
    assert "200 × 240 (height × width) raster" in _fields(outside.value)["header.window"]
    assert "min_x < max_x" in _fields(inverted.value)["header.aoi"]
    assert "outside the window" in _fields(click_outside.value)["header.clicks[0]"]


def test_source_bands_reorder_and_replicate_bands(segmenter, scene_tif, raster_root):
    address, _ = segmenter
    path, image, _ = scene_tif
    grey = raster_root / "grey.tif"
    _write(grey, image[:, :, 1:2])
    with SegmenterClient(address) as client:
        reordered = client.predict_raster(str(path), model="tiny", source_bands=[3, 2, 1]).labels
        expected = client.predict_raster(image[:, :, ::-1].copy(), model="tiny").labels
        replicated = client.predict_raster(str(grey), model="tiny", source_bands=[1, 1, 1]).labels
        expected_grey = client.predict_raster(np.repeat(image[:, :, 1:2], 3, axis=2), model="tiny").labels
    np.testing.assert_array_equal(reordered, expected)
    np.testing.assert_array_equal(replicated, expected_grey)


def test_source_range_rescales_uint16_to_the_models_uint8(segmenter, scene_tif, raster_root):
    address, _ = segmenter
    _, image, _ = scene_tif
    # 11-bit values whose 0..2047 range is the uint8 image's 0..255 again: v * 2047 / 255, rounded.
    eleven_bit = np.rint(image.astype(np.float64) * 2047 / 255).astype(np.uint16)
    path = raster_root / "eleven_bit.tif"
    _write(path, eleven_bit)
    with SegmenterClient(address) as client:
        rescaled = client.predict_raster(str(path), model="tiny", source_range=(0, 2047)).labels
        original = client.predict_raster(image, model="tiny").labels
        # A window of a mapped source: both apply, on the tiles the tiler reads.
        tile = client.predict_raster(str(path), model="tiny", source_range=(0, 2047), window=(10, 20, 64, 64))
        original_tile = client.predict_raster(image[10:74, 20:84].copy(), model="tiny").labels
    np.testing.assert_array_equal(rescaled, original)
    np.testing.assert_array_equal(tile.labels, original_tile)


def test_band_and_dtype_mismatches_say_which_mapping_would_fix_them(segmenter, raster_root):
    address, _ = segmenter
    path = raster_root / "pan.tif"
    _write(path, np.full((32, 32, 1), 900, np.uint16))
    with SegmenterClient(address) as client:
        with pytest.raises(InvalidArgument) as unmapped:
            client.predict_raster(str(path), model="tiny")
        with pytest.raises(InvalidArgument) as wrong:
            client.predict_raster(str(path), model="tiny", source_bands=[1, 2], source_range=(10, 10))
    found = _fields(unmapped.value)
    assert "source_bands [1, 1, 1]" in found["header.raster.bands"]
    assert "source_range" in found["header.raster.dtype"] and "0..2047" in found["header.raster.dtype"]
    found = _fields(wrong.value)
    assert "the model takes 3" in found["header.source_bands"]
    assert "the source has bands 1..1" in found["header.source_bands[1]"]
    assert "min < max" in found["header.source_range"]


@pytest.fixture()
def spacenet_segmenter(tiny_repo, raster_root):
    """A segmenter that may read the shared SpaceNet images in place."""
    from dial_services.segmenter.config import SegmenterConfig
    from dial_services.segmenter.main import start

    config = SegmenterConfig(host="127.0.0.1", port=0, model_repo=tiny_repo,
                             raster_roots=(raster_root, SPACENET.parent), max_queue_delay_ms=1.0)
    running = start(config)
    yield f"127.0.0.1:{running.port}"
    running.stop(0)


def test_the_single_band_11_bit_spacenet_geotiff_end_to_end(spacenet_segmenter, raster_root):
    with rasterio.open(SPACENET) as ds:
        assert (ds.count, ds.dtypes[0]) == (1, "uint16")  # what makes it unusable without a mapping
        crs, transform = ds.crs, ds.transform
        pan = ds.read(1)
    out = raster_root / "spacenet_classes.tif"
    with SegmenterClient(spacenet_segmenter) as client:
        result = client.predict_raster(str(SPACENET), model="tiny", output_uri=str(out),
                                       source_bands=[1, 1, 1], source_range=(0, 2047))
        # The mapping a caller would otherwise do by hand, sent as an array.
        by_hand = np.repeat(np.rint(np.clip(pan / 2047 * 255, 0, 255)).astype(np.uint8)[:, :, None], 3, axis=2)
        expected = client.predict_raster(by_hand, model="tiny", tile_px=650).labels
    assert result.window == (0, 0, 1300, 1300)
    with rasterio.open(out) as ds:
        assert ds.crs == crs and ds.transform == transform
        labels = ds.read(1)
    np.testing.assert_array_equal(labels, expected)
    assert len(np.unique(labels)) > 1  # the model saw an image, not a constant


@pytest.fixture()
def remote_rasters(tmp_path):
    """A COG served over loopback HTTP (with byte ranges, as GDAL reads COGs) in an allowed and an other folder."""
    from tests.support.http_ranges import serving

    served = tmp_path / "served"
    image = make_scene(96, 128, seed=13).image
    for folder in ("allowed", "other"):
        (served / folder).mkdir(parents=True)
        with rasterio.open(served / folder / "scene.tif", "w", driver="COG", height=96, width=128, count=3,
                           dtype="uint8", crs="EPSG:32633", transform=from_origin(*ORIGIN, PIXEL_M, PIXEL_M),
                           blocksize=64) as ds:
            ds.write(np.moveaxis(image, -1, 0))
    with serving(served) as server:
        yield f"/vsicurl/http://127.0.0.1:{server.server_address[1]}", server, image


@pytest.fixture()
def remote_segmenter(tiny_repo, raster_root, remote_rasters):
    from dial_services.segmenter.config import SegmenterConfig
    from dial_services.segmenter.main import start

    base, _, _ = remote_rasters
    config = SegmenterConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, raster_roots=(raster_root,),
                             raster_remote_prefixes=f"{base}/allowed/,/vsis3/dial-test-bucket/imagery/",
                             max_queue_delay_ms=1.0)
    running = start(config)
    yield f"127.0.0.1:{running.port}"
    running.stop(0)


def test_a_remote_cog_under_an_allowed_prefix_is_read_through_gdal(remote_segmenter, remote_rasters, raster_root):
    from dial_client.errors import NotFound

    base, server, image = remote_rasters
    out = raster_root / "remote.tif"
    with SegmenterClient(remote_segmenter) as client:
        remote = client.predict_raster(f"{base}/allowed/scene.tif", model="tiny", output_uri=str(out),
                                       window=(16, 0, 64, 128))
        local = client.predict_raster(image[16:80].copy(), model="tiny").labels
        with pytest.raises(NotFound):
            client.predict_raster(f"{base}/allowed/absent.tif", model="tiny")
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(1), local)
        assert ds.crs.to_string() == "EPSG:32633"
    assert remote.window == (16, 0, 64, 128)
    assert server.requests and all(path.startswith("/allowed/") for path in server.requests)


@pytest.mark.parametrize("name", [
    "{base}/other/scene.tif",  # another folder of the same host
    "{base}/allowed/../other/scene.tif",  # climbing out of the prefix
    "{base}/allowed/%2e%2e/other/scene.tif",  # the same, percent-encoded for the HTTP server to undo
    "/vsizip/{base}/allowed/scene.zip/scene.tif",  # a chain that starts with another file system
    "/vsicurl/{base}/allowed/scene.tif",  # a second /vsi prefix
    "{base_host}.evil.example/allowed/scene.tif",  # a host whose name starts like the allowed one
    "/vsis3/dial-test-bucket/other/scene.tif",
    "/vsigs/dial-test-bucket/imagery/scene.tif",
])
def test_remote_names_outside_the_allowed_prefixes_are_denied_unfetched(remote_segmenter, remote_rasters, name):
    from dial_client.errors import PermissionDenied

    base, server, _ = remote_rasters
    with SegmenterClient(remote_segmenter) as client:
        with pytest.raises(PermissionDenied):
            client.predict_raster(name.format(base=base, base_host=base.rsplit(":", 1)[0]), model="tiny")
    assert server.requests == []


def test_remote_reads_are_off_by_default_and_never_write(segmenter, remote_segmenter, remote_rasters, raster_root):
    from dial_client.errors import DialError, PermissionDenied

    base, server, _ = remote_rasters
    address, _ = segmenter
    with SegmenterClient(address) as client, pytest.raises(PermissionDenied) as default:
        client.predict_raster(f"{base}/allowed/scene.tif", model="tiny")
    assert "no remote prefixes are allowed" in str(default.value)
    assert server.requests == []
    with SegmenterClient(remote_segmenter) as client:
        with pytest.raises(PermissionDenied):
            client.predict_raster(str(raster_root / "absent.tif"), model="tiny",
                                  output_uri="/vsis3/dial-test-bucket/imagery/out.tif")
        # /vsis3/ is matched by prefix alone; with no credentials (and no network here) GDAL then refuses it
        # with its own reason, a client error, not a server failure.
        with pytest.raises(DialError) as s3:
            client.predict_raster("/vsis3/dial-test-bucket/imagery/scene.tif", model="tiny")
    assert s3.value.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)


@pytest.mark.parametrize("prefix", ["/vsicurl/https://data.example.org", "/vsicurl/file:///etc/",
                                    "/vsizip//vsicurl/https://data.example.org/", "/vsis3/", "https://x.org/",
                                    "/vsicurl/https://data.example.org/../"])
def test_unsafe_remote_prefixes_stop_start_up(tiny_repo, prefix):
    from dial_services.common.config import ConfigError, load_config
    from dial_services.segmenter.config import SegmenterConfig

    with pytest.raises(ConfigError, match="raster_remote_prefixes"):
        load_config(SegmenterConfig, {"model_repo": tiny_repo, "raster_remote_prefixes": prefix})


def test_a_streamed_array_is_mapped_too(segmenter):
    address, _ = segmenter
    image = make_scene(64, 96, seed=17).image
    pan = np.rint(image[:, :, :1].astype(np.float64) * 2047 / 255).astype(np.uint16)
    with SegmenterClient(address) as client:
        mapped = client.predict_raster(pan, model="tiny", source_bands=[1, 1, 1], source_range=(0, 2047),
                                       tile_px=40).labels
        expected = client.predict_raster(np.repeat(image[:, :, :1], 3, axis=2), model="tiny").labels
        with pytest.raises(InvalidArgument) as unmapped:
            client.predict_raster(pan, model="tiny")
    np.testing.assert_array_equal(mapped, expected)
    assert "header.tiles.bands" in _fields(unmapped.value)


def test_a_models_manifest_sets_the_mapping_a_request_may_override(writable_repo, raster_root, tiny_manifest):
    import json

    from dial_services.segmenter.config import SegmenterConfig
    from dial_services.segmenter.main import start

    manifest_path = writable_repo / "tiny" / tiny_manifest.version / "manifest.json"
    data = json.loads(manifest_path.read_text())
    data.update(source_bands=[1, 1, 1], source_range=[0, 2047])
    manifest_path.write_text(json.dumps(data))
    image = make_scene(64, 64, seed=19).image
    pan = raster_root / "pan.tif"
    _write(pan, np.rint(image[:, :, 1:2].astype(np.float64) * 2047 / 255).astype(np.uint16))
    rgb = raster_root / "rgb.tif"
    _write(rgb, image)
    running = start(SegmenterConfig(host="127.0.0.1", port=0, model_repo=writable_repo, raster_roots=(raster_root,),
                                    max_queue_delay_ms=1.0))
    try:
        with SegmenterClient(f"127.0.0.1:{running.port}") as client:
            by_default = client.predict_raster(str(pan), model="tiny").labels
            expected = client.predict_raster(np.repeat(image[:, :, 1:2], 3, axis=2), model="tiny",
                                             source_bands=[1, 2, 3], source_range=(0, 255)).labels
            # An RGB raster overrides the defaults with its own bands and the identity range.
            overridden = client.predict_raster(str(rgb), model="tiny", source_bands=[1, 2, 3],
                                               source_range=(0, 255)).labels
            direct = client.predict(image, model="tiny").labels
    finally:
        running.stop(0)
    np.testing.assert_array_equal(by_default, expected)
    np.testing.assert_array_equal(overridden, direct)


def test_source_bands_choose_a_models_bands_from_a_multispectral_raster(segmenter, raster_root):
    address, _ = segmenter
    image = make_scene(64, 80, seed=23).image
    # Five 11-bit bands, the scene's red, green and blue in bands 5, 3 and 2 (as on a multispectral sensor).
    bands = np.zeros((64, 80, 5), np.uint16)
    bands[..., [4, 2, 1]] = np.rint(image.astype(np.float64) * 2047 / 255).astype(np.uint16)
    bands[..., 0] = bands[..., 3] = 1500
    path = raster_root / "multispectral.tif"
    _write(path, bands)
    with SegmenterClient(address) as client:
        mapped = client.predict_raster(str(path), model="tiny", source_bands=[5, 3, 2], source_range=(0, 2047)).labels
        expected = client.predict_raster(image, model="tiny").labels
        with pytest.raises(InvalidArgument) as unmapped:
            client.predict_raster(str(path), model="tiny", source_range=(0, 2047))
    np.testing.assert_array_equal(mapped, expected)
    assert "the source has 5" in _fields(unmapped.value)["header.raster.bands"]


def test_an_allowed_host_that_does_not_answer_is_unavailable(tiny_repo, raster_root, free_port):
    from dial_client.errors import Unavailable
    from dial_services.segmenter.config import SegmenterConfig
    from dial_services.segmenter.main import start

    down = f"/vsicurl/http://127.0.0.1:{free_port}/"  # nothing listens there
    running = start(SegmenterConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, raster_roots=(raster_root,),
                                    raster_remote_prefixes=down))
    try:
        with SegmenterClient(f"127.0.0.1:{running.port}", retries=0) as client:
            with pytest.raises(Unavailable, match="retry later"):
                client.predict_raster(f"{down}scene.tif", model="tiny")
    finally:
        running.stop(0)


def test_a_streamed_arrays_aoi_uses_the_georeference_sent_with_it(segmenter):
    from dial_client import GeoReference

    address, _ = segmenter
    image = make_scene(96, 96, seed=29).image
    geo = GeoReference("EPSG:32633", tuple(from_origin(*ORIGIN, PIXEL_M, PIXEL_M))[:6])
    x0, y0 = ORIGIN
    with SegmenterClient(address) as client:
        by_aoi = client.predict_raster(image, model="tiny", geo=geo, tile_px=48,
                                       aoi=(x0 + 8 * PIXEL_M, y0 - 72 * PIXEL_M, x0 + 40 * PIXEL_M, y0 - 24 * PIXEL_M))
        alone = client.predict_raster(image[24:72, 8:40].copy(), model="tiny").labels
    assert by_aoi.window == (24, 8, 48, 32)
    np.testing.assert_array_equal(by_aoi.labels, alone)
