"""Files a caller may plant in a raster root to make GDAL read something else.

Each is named like a GeoTIFF. Some are formats whose content names other
files or URLs (VRT, GTI, WMS, WMTS), some are self-contained formats the
services do not read (GeoPackage, PNG, JPEG), and some are genuine GeoTIFFs
with sidecar files that point out of the root. Shared by the unit tests
(``tests/services/test_security_gdal.py``, the fuzz tests) and the reliability fuzz
corpus, so all of them try the same attacks.
"""
from __future__ import annotations

import os
import threading
import warnings
import zipfile
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

SIZE_PX = 64
# The value every pixel of the file outside the root holds: finding it in a reply means GDAL read that file.
SECRET_VALUE = 201


def _geotiff(path: Path, value: int, size: int = SIZE_PX, bands: int = 3, driver: str = "GTiff") -> Path:
    import rasterio
    from rasterio.transform import from_origin

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver=driver, height=size, width=size, count=bands, dtype="uint8",
                           crs="EPSG:32631", transform=from_origin(500000, 5000000, 1, 1)) as ds:
            ds.write(np.full((bands, size, size), value, np.uint8))
    return path


def _vrt(sources: list[str], bands: int = 3, raw: bool = False) -> str:
    """A VRT of SIZE_PX² pixels whose bands come from ``sources`` (files, /vsi paths or URLs)."""
    parts = []
    for band in range(1, bands + 1):
        source = sources[(band - 1) % len(sources)]
        if raw:  # a raw band reads any file's bytes as pixels: /proc/self/environ, keys, ...
            parts.append(f'<VRTRasterBand dataType="Byte" band="{band}" subClass="VRTRawRasterBand">'
                         f'<SourceFilename relativetoVRT="0">{source}</SourceFilename><ImageOffset>0</ImageOffset>'
                         '<PixelOffset>1</PixelOffset><LineOffset>64</LineOffset></VRTRasterBand>')
        else:
            parts.append(f'<VRTRasterBand dataType="Byte" band="{band}"><SimpleSource>'
                         f'<SourceFilename relativeToVRT="0">{source}</SourceFilename>'
                         f'<SourceBand>{band}</SourceBand></SimpleSource></VRTRasterBand>')
    return f'<VRTDataset rasterXSize="{SIZE_PX}" rasterYSize="{SIZE_PX}">{"".join(parts)}</VRTDataset>'


def referencing_files(root: Path, outside: Path, url: str) -> dict[str, Path]:
    """Files named ``.tif`` in ``root`` whose format makes GDAL read ``outside`` or ``url``; name -> path."""
    secret = _geotiff(outside / "secret.tif", SECRET_VALUE)
    with zipfile.ZipFile(outside / "archive.zip", "w") as archive:
        archive.write(secret, "secret.tif")
    files = {
        "vrt-of-a-file-outside": _vrt([str(secret)]),
        "vrt-of-proc-environ": _vrt(["/proc/self/environ"], raw=True),
        "vrt-of-vsicurl": _vrt([f"/vsicurl/{url}/remote.tif"]),
        "vrt-of-vsizip": _vrt([f"/vsizip/{outside}/archive.zip/secret.tif"]),
        "vrt-of-a-vrt": _vrt([str(root / "vrt-of-a-file-outside.tif")]),
        "gti-index": (f"<GDALTileIndexDataset><IndexDataset>{outside}/index.gpkg</IndexDataset>"
                      "<IndexLayer>index</IndexLayer><LocationField>location</LocationField>"
                      "</GDALTileIndexDataset>"),
        "wms-service": (f"<GDAL_WMS><Service name=\"TMS\"><ServerUrl>{url}/${{z}}/${{x}}/${{y}}.png</ServerUrl>"
                        "</Service><DataWindow><UpperLeftX>-20037508.34</UpperLeftX><UpperLeftY>20037508.34"
                        "</UpperLeftY><LowerRightX>20037508.34</LowerRightX><LowerRightY>-20037508.34</LowerRightY>"
                        "<TileLevel>1</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY></DataWindow>"
                        "<BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY><BandsCount>3</BandsCount>"
                        "</GDAL_WMS>"),
        "wmts-service": f"<GDAL_WMTS><GetCapabilitiesUrl>{url}/wmts.xml</GetCapabilitiesUrl></GDAL_WMTS>",
    }
    paths = {}
    for name, text in files.items():
        paths[name] = root / f"{name}.tif"
        paths[name].write_text(text)
    return paths


def other_formats(root: Path) -> dict[str, Path]:
    """Self-contained files the services do not read, named ``.tif``, and real PNG and JPEG files."""
    paths = {"geopackage": _geotiff(root / "geopackage.tif", 7, size=256, driver="GPKG"),
             "png": _geotiff(root / "image.png", 7, driver="PNG"),
             "jpeg": _geotiff(root / "image.jpg", 7, driver="JPEG")}
    paths["png-named-tif"] = root / "png-named.tif"
    paths["png-named-tif"].write_bytes(paths["png"].read_bytes())
    return paths


def sidecar_files(root: Path, outside: Path) -> dict[str, Path]:
    """Genuine GeoTIFFs (pixels 7) whose sidecars point at a file outside the root (pixels SECRET_VALUE)."""
    secret = _geotiff(outside / "secret-overview.tif", SECRET_VALUE, size=SIZE_PX // 2)
    pam = _geotiff(root / "aux-xml-overview.tif", 7)
    # GDAL takes OVERVIEW_FILE from a .aux.xml as given, absolute paths included.
    Path(f"{pam}.aux.xml").write_text(f'<PAMDataset><Metadata domain="OVERVIEWS"><MDI key="OVERVIEW_FILE">{secret}'
                                      '</MDI></Metadata></PAMDataset>')
    ovr = _geotiff(root / "ovr-symlink.tif", 7)
    os.symlink(secret, f"{ovr}.ovr")
    msk = _geotiff(root / "msk-symlink.tif", 7)
    os.symlink(secret, f"{msk}.msk")
    return {"aux-xml-overview": pam, "ovr-symlink": ovr, "msk-symlink": msk}


def damaged_files(root: Path) -> dict[str, Path]:
    """A GeoTIFF cut short after its header, a FIFO and a folder, all named ``.tif``."""
    whole = _geotiff(root / "whole.tif", 7, size=512)
    truncated = root / "truncated.tif"
    truncated.write_bytes(whole.read_bytes()[:4096])
    whole.unlink()
    fifo = root / "fifo.tif"
    os.mkfifo(fifo)
    folder = root / "folder.tif"
    folder.mkdir()
    return {"truncated": truncated, "fifo": fifo, "folder": folder}


@contextmanager
def counting_http_server():
    """A local HTTP server that answers 404 and counts requests: ``(url, hits)``, hits a list of paths."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_error(404)

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", hits
    finally:
        server.shutdown()
        server.server_close()


def plant(root: Path, outside: Path, url: str, bands: int = 3) -> dict[str, Path]:
    """Every hostile file above in ``root``, plus a genuine GeoTIFF ("good") of ``bands``; name -> path."""
    files = {**referencing_files(root, outside, url), **other_formats(root), **sidecar_files(root, outside),
             **damaged_files(root), "good": _geotiff(root / "good.tif", 7, bands=bands)}
    (root / "loop.tif").symlink_to(root / "loop.tif")
    (root / "out-folder.tif").mkdir()
    os.mkfifo(root / "out-fifo.tif")
    return files


def hostile_uris(root: Path, files: dict[str, Path]) -> list[str]:
    """Raster URIs for requests: the planted files, and paths the file system refuses (too long, a loop)."""
    return [str(p) for p in files.values()] + [
        f"{root}/{'n' * 300}.tif", f"{root}/{'/'.join(['d' * 200] * 25)}.tif", f"{root}/loop.tif",
        f"file://{files['vrt-of-a-file-outside']}", f"{files['good']}/below-a-file.tif"]


def hostile_outputs(root: Path, files: dict[str, Path]) -> list[str]:
    """Output URIs that must be refused: a folder, a FIFO, the input itself, too long, a loop."""
    return [str(root / "out-folder.tif"), str(root / "out-fifo.tif"), str(files["good"]), f"{root}/./good.tif",
            f"{root}/{'n' * 300}.tif", f"{root}/loop.tif"]
