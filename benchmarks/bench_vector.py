"""Vector output against prediction, on a 4000x4000 class map.

1. Predict: ``PredictRaster`` of a 4000x4000 GeoTIFF on a ``dial serve
   segmenter`` process, the class map written server-side as a GeoTIFF.
2. Vectorise that class map with ``dial vectorize`` in a fresh process, to a
   GeoPackage, to RFC 7946 GeoJSON, and to a GeoPackage simplified by one
   pixel: seconds, features, the process's peak resident memory, and the
   time as a share of the prediction's.

Rounds alternate (predict, then each vectorisation) and medians are quoted.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, benchmark_repo, write_report
from benchmarks.bench_segmenter import start_segmenter

PIXEL_M = 0.5


def write_scene(path: Path, size: int) -> None:
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from dial.synthetic import make_scene

    block = make_scene(1000, 1000, seed=1).image
    with rasterio.open(path, "w", driver="GTiff", height=size, width=size, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 4000000, PIXEL_M, PIXEL_M), tiled=True,
                       blockxsize=512, blockysize=512, compress="deflate") as ds:
        for r in range(0, size, 1000):
            for c in range(0, size, 1000):
                h, w = min(1000, size - r), min(1000, size - c)
                ds.write(np.moveaxis(block[:h, :w], -1, 0), window=Window(c, r, w, h))


def vectorize_process(class_map: Path, out: Path, *extra: str) -> dict:
    """``dial vectorize`` as its own process: wall seconds, features and peak RSS (from wait4)."""
    command = [sys.executable, "-m", "dial_services.cli", "vectorize", str(class_map), str(out), *extra]
    t = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - t
    stdout, stderr = child.stdout.read(), child.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"dial vectorize failed: {stderr.decode(errors='replace')[-2000:]}")
    import json

    return {"seconds": seconds, "features": json.loads(stdout)["features"], "peak_rss_mib": usage.ru_maxrss / 1024,
            "bytes": out.stat().st_size}


def main(argv: list[str] | None = None) -> dict:
    import argparse

    from dial_client import SegmenterClient

    parser = argparse.ArgumentParser(prog="bench_vector")
    parser.add_argument("--raster-px", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "vector.json"))
    args = parser.parse_args(argv)
    variants = {"gpkg": ("map.gpkg",), "geojson": ("map.geojson",),
                "gpkg_simplified_1px": ("simple.gpkg", "--simplify", str(PIXEL_M))}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        raster_root = work / "rasters"
        raster_root.mkdir()
        repo, model = benchmark_repo(work)
        src = raster_root / "scene.tif"
        write_scene(src, args.raster_px)
        class_map = raster_root / "labels.tif"
        from dial.model.repository import ModelRepository

        # The names as a list: naming the model would make each `dial vectorize` load torch for the lookup.
        class_names = ",".join(ModelRepository(repo).manifest(model).class_names)
        server = start_segmenter(repo, raster_root)
        predict_s: list[float] = []
        runs: dict[str, list[dict]] = {name: [] for name in variants}
        try:
            with SegmenterClient(server.address, raster_timeout=3600) as client:
                for _ in range(args.rounds):
                    t = time.perf_counter()
                    client.predict_raster(str(src), model=model, output_uri=str(class_map))
                    predict_s.append(time.perf_counter() - t)
                    for name, (file_name, *extra) in variants.items():
                        runs[name].append(vectorize_process(class_map, work / file_name, *extra,
                                                            "--classes", class_names))
        finally:
            server.stop()
    predict = statistics.median(predict_s)
    report = {"model": model, "cpu_count": os.cpu_count(), "raster_px": f"{args.raster_px}x{args.raster_px}",
              "rounds": args.rounds, "predict_raster_s": round(predict, 2)}
    for name, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        report[name] = {"seconds": round(seconds, 2), "share_of_predict": round(seconds / predict, 3),
                        "features": results[-1]["features"], "bytes": results[-1]["bytes"],
                        "peak_rss_mib": round(max(r["peak_rss_mib"] for r in results))}
    write_report(report, args.json)
    return report


if __name__ == "__main__":
    main()
