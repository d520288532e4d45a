"""Vector output against prediction, on 1000x1000 and 4000x4000 class maps.

Two class maps per size:

- ``predicted``: a mosaic of the real Dubai images in ``shared/data`` (the
  landcover model's own domain), predicted with ``PredictRaster`` on a
  ``dial serve segmenter`` process, the class map written server-side as a
  GeoTIFF. Its prediction time is the yardstick.
- ``speckle``: the worst case, every pixel an independent random class out
  of six, so about two regions in three pixels are one pixel large.

Each map is vectorised with ``dial vectorize`` in a fresh process, to a
GeoPackage, to RFC 7946 GeoJSON and to a GeoPackage simplified by one
pixel: seconds, features, output bytes, the process's peak resident memory
(from wait4) and the time as a share of the prediction's. The speckle map
skips GeoJSON above ``--geojson-max-px`` (ten million features make a
multi-GB text file; a GeoPackage is the format for that) and simplification.

Rounds alternate (predict, then each vectorisation) and medians are quoted;
sizes above 1000x1000 run ``--large-rounds`` rounds. ``cli_startup`` is what
each ``dial vectorize`` process pays before it reads a pixel (``--help``).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_segmenter import start_segmenter
from benchmarks.common import ROOT, benchmark_repo, write_report

PIXEL_M = 0.5
REAL_IMAGES = ROOT.parent / "shared" / "data" / "dubai-landcover-hitl" / "images"
PROFILE = dict(driver="GTiff", count=1, dtype="uint8", crs="EPSG:32633", tiled=True, blockxsize=512, blockysize=512,
               compress="deflate")


def _profile(size: int, count: int = 1) -> dict:
    from rasterio.transform import from_origin

    return {**PROFILE, "count": count, "height": size, "width": size,
            "transform": from_origin(500000, 4000000, PIXEL_M, PIXEL_M)}


def write_real_scene(path: Path, size: int) -> None:
    """The real images laid edge to edge, row by row, cropped to ``size`` x ``size``."""
    import rasterio

    files = sorted(REAL_IMAGES.glob("*.jpg"))
    if not files:
        raise SystemExit(f"bench_vector needs the real images in {REAL_IMAGES}")
    image = np.zeros((size, size, 3), np.uint8)
    row = col = row_height = i = 0
    while row < size:
        with rasterio.open(files[i % len(files)]) as ds:
            tile = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
        i += 1
        h, w = min(tile.shape[0], size - row), min(tile.shape[1], size - col)
        image[row:row + h, col:col + w] = tile[:h, :w]
        row_height, col = max(row_height, h), col + w
        if col >= size:
            row, col, row_height = row + row_height, 0, 0
    with rasterio.open(path, "w", **_profile(size, 3)) as ds:
        ds.write(np.moveaxis(image, -1, 0))


def write_speckle(path: Path, size: int) -> None:
    import rasterio
    from rasterio.windows import Window

    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **_profile(size)) as ds:
        for top in range(0, size, 512):
            rows = min(512, size - top)
            ds.write(rng.integers(0, 6, (rows, size), dtype=np.uint8), 1, window=Window(0, top, size, rows))


def cli_process(*args: str) -> tuple[float, float, bytes]:
    """``dial ARGS`` as its own process: wall seconds, peak RSS in MiB (from wait4) and its stdout."""
    command = [sys.executable, "-m", "dial_services.cli", *args]
    # Output to files, not pipes: wait4 reaps the child itself, so nothing may wait on a full pipe.
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        t = time.perf_counter()
        child = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - t
        child.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if child.returncode != 0:
            raise RuntimeError(f"dial {args[0]} failed: {stderr.read().decode(errors='replace')[-2000:]}")
        return seconds, usage.ru_maxrss / 1024, stdout.read()


def vectorize_process(class_map: Path, out: Path, *extra: str) -> dict:
    """``dial vectorize`` in a fresh process: seconds, features, output bytes, peak RSS."""
    seconds, rss, stdout = cli_process("vectorize", str(class_map), str(out), *extra)
    result = {"seconds": seconds, "features": json.loads(stdout)["features"], "peak_rss_mib": rss,
              "bytes": out.stat().st_size}
    out.unlink()
    return result


def main(argv: list[str] | None = None) -> dict:
    import argparse

    from dial.model.repository import ModelRepository
    from dial_client import SegmenterClient

    parser = argparse.ArgumentParser(prog="bench_vector")
    parser.add_argument("--sizes", default="1000,4000", help="comma-separated class-map sizes in pixels")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--large-rounds", type=int, default=1, help="rounds for sizes above 1000")
    parser.add_argument("--geojson-max-px", type=int, default=1000 * 1000,
                        help="largest speckle map written as GeoJSON too")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "vector.json"))
    args = parser.parse_args(argv)
    # What every `dial vectorize` pays before it reads a pixel: the interpreter and the command line.
    startup = [cli_process("vectorize", "--help")[:2] for _ in range(3)]
    report: dict = {"cpu_count": os.cpu_count(),
                    "cli_startup": {"seconds": round(statistics.median(s for s, _ in startup), 2),
                                    "peak_rss_mib": round(max(r for _, r in startup))},
                    "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        raster_root = work / "rasters"
        raster_root.mkdir()
        repo, model = benchmark_repo(work)
        report["model"] = model
        # The names as a list: naming the model would make each `dial vectorize` load torch for the lookup.
        class_names = ",".join(ModelRepository(repo).manifest(model).class_names)
        server = start_segmenter(repo, raster_root)
        try:
            with SegmenterClient(server.address, raster_timeout=3600) as client:
                for size in (int(s) for s in args.sizes.split(",")):
                    report["sizes"][f"{size}x{size}"] = measure_size(client, model, raster_root, work, size,
                                                                     class_names, args)
                    write_report(report, args.json)
        finally:
            server.stop()
    return report


def measure_size(client, model: str, raster_root: Path, work: Path, size: int, class_names: str, args) -> dict:
    scene, predicted, speckle = (raster_root / f"{n}_{size}.tif" for n in ("scene", "predicted", "speckle"))
    write_real_scene(scene, size)
    write_speckle(speckle, size)
    variants = {"gpkg": ("map.gpkg",), "geojson": ("map.geojson",),
                "gpkg_simplified_1px": ("simple.gpkg", "--simplify", str(PIXEL_M))}
    maps = {"predicted": (predicted, variants),
            "speckle": (speckle, {k: v for k, v in variants.items()
                                  if k == "gpkg" or (k == "geojson" and size * size <= args.geojson_max_px)})}
    rounds = args.rounds if size <= 1000 else args.large_rounds
    predict_s: list[float] = []
    runs: dict[str, dict[str, list[dict]]] = {m: {v: [] for v in chosen} for m, (_, chosen) in maps.items()}
    for _ in range(rounds):
        t = time.perf_counter()
        client.predict_raster(str(scene), model=model, output_uri=str(predicted), overwrite=True)
        predict_s.append(time.perf_counter() - t)
        for name, (class_map, chosen) in maps.items():
            for variant, (file_name, *extra) in chosen.items():
                runs[name][variant].append(vectorize_process(class_map, work / file_name, *extra,
                                                             "--classes", class_names))
    predict = statistics.median(predict_s)
    result: dict = {"rounds": rounds, "predict_raster_s": round(predict, 2)}
    for name, by_variant in runs.items():
        result[name] = {}
        for variant, measured in by_variant.items():
            seconds = statistics.median(r["seconds"] for r in measured)
            result[name][variant] = {"seconds": round(seconds, 2), "share_of_predict": round(seconds / predict, 3),
                                     "features": measured[-1]["features"], "bytes": measured[-1]["bytes"],
                                     "peak_rss_mib": round(max(r["peak_rss_mib"] for r in measured))}
    return result


if __name__ == "__main__":
    main()
