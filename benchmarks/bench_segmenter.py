"""Segmenter overheads, measured side by side in one run.

1. A 512x512 ``Predict`` through gRPC against the same model called
   in-process (the same tiler and ONNX Runtime session type), alternating
   call by call so machine noise hits both equally. Medians and their ratio.
2. Whole-raster throughput: tiles per second for a 4000x4000 GeoTIFF through
   ``PredictRaster`` (read, infer, blend, write) against the model-only rate
   (ONNX Runtime on batches of the same tiles, nothing else), in alternating
   rounds, medians; plus the server's peak resident memory during the jobs.
3. Dynamic batching on and off, with 4 concurrent clients.
4. What clicks cost: a 512x512 ``Predict`` with 20 clicks against one with
   none, through gRPC, alternating call by call (target: at most 1.3x).

The server runs as its own process (``dial serve segmenter``), which sets
the production malloc tuning itself, exactly as ``dial up`` starts it.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, benchmark_repo, write_report
from tests.support.processes import ServiceProcess


def start_segmenter(repo: Path, raster_root: Path, *extra: str) -> ServiceProcess:
    server = ServiceProcess("segmenter", ["--model-repo", str(repo), "--raster-roots", str(raster_root), *extra])
    server.wait_serving()
    return server


def predict_overhead(server: ServiceProcess, repo: Path, model: str, repeats: int) -> dict:
    from dial.inference.predictors import OnnxPredictor
    from dial.inference.tiling import predict_labels
    from dial.model.repository import ModelRepository
    from tests.support.synthetic import make_scene
    from dial_client import Click, SegmenterClient

    repository = ModelRepository(repo)
    manifest = repository.manifest(model)
    local = OnnxPredictor(repository.onnx_path(model), manifest, provider="cpu")
    image = make_scene(512, 512, seed=0).image
    clicks = [Click(100, 100, 1), Click(300, 400, 2)]
    grpc_times, local_times = [], []
    with SegmenterClient(server.address) as client:
        for _ in range(3):  # warm-up both paths
            client.predict(image, clicks=clicks, model=model)
            predict_labels(local, image, clicks)
        for _ in range(repeats):
            t = time.perf_counter()
            client.predict(image, clicks=clicks, model=model)
            grpc_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            predict_labels(local, image, clicks)
            local_times.append(time.perf_counter() - t)
    g, l = statistics.median(grpc_times), statistics.median(local_times)
    return {"grpc_predict_512_ms": round(1000 * g, 1), "in_process_onnx_512_ms": round(1000 * l, 1),
            "ratio": round(g / l, 3), "repeats": repeats, "target_ratio": 1.15}


def click_cost(server: ServiceProcess, model: str, repeats: int, n_clicks: int = 20) -> dict:
    """Median ``Predict`` latency with ``n_clicks`` clicks against none, alternating, through gRPC."""
    from tests.support.synthetic import make_scene
    from dial_client import Click, SegmenterClient

    image = make_scene(512, 512, seed=3).image
    rng = np.random.default_rng(3)
    with SegmenterClient(server.address) as client:
        n_classes = len(client.get_model(model).classes)
        clicks = [Click(int(r), int(c), int(k)) for r, c, k in
                  zip(rng.integers(0, 512, n_clicks), rng.integers(0, 512, n_clicks), rng.integers(0, n_classes, n_clicks))]
        for _ in range(3):
            client.predict(image, model=model)
            client.predict(image, clicks=clicks, model=model)
        bare, clicked = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            client.predict(image, model=model)
            bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            client.predict(image, clicks=clicks, model=model)
            clicked.append(time.perf_counter() - t)
    b, c = statistics.median(bare), statistics.median(clicked)
    return {"no_clicks_ms": round(1000 * b, 1), f"{n_clicks}_clicks_ms": round(1000 * c, 1),
            "ratio": round(c / b, 3), "repeats": repeats, "target_ratio": 1.3}


def raster_throughput(server: ServiceProcess, repo: Path, model: str, raster_root: Path, size: int,
                      rounds: int) -> dict:
    import rasterio
    from rasterio.transform import from_origin

    from dial.inference.inputs import network_input
    from dial.inference.predictors import OnnxPredictor
    from dial.inference.tiling import TileGrid
    from dial.model.repository import ModelRepository
    from tests.support.synthetic import make_scene
    from dial_client import SegmenterClient

    src = raster_root / f"scene{size}.tif"
    block = make_scene(1000, 1000, seed=1).image
    with rasterio.open(src, "w", driver="GTiff", height=size, width=size, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 4000000, 0.5, 0.5), tiled=True,
                       blockxsize=512, blockysize=512, compress="deflate") as ds:
        for r in range(0, size, 1000):
            for c in range(0, size, 1000):
                h, w = min(1000, size - r), min(1000, size - c)
                ds.write(np.moveaxis(block[:h, :w], -1, 0), window=rasterio.windows.Window(c, r, w, h))
    repository = ModelRepository(repo)
    manifest = repository.manifest(model)
    grid = TileGrid(size, size, manifest.tile_px, manifest.overlap_px)
    n_tiles = len(grid)

    peak = {"rss": server.rss_mb()}
    baseline_rss = peak["rss"]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak["rss"] = max(peak["rss"], server.rss_mb())
            time.sleep(0.05)

    # Model-only: the same number of tiles, already prepared, straight into ONNX Runtime.
    local = OnnxPredictor(repository.onnx_path(model), manifest, provider="cpu")
    x = np.stack([network_input(block[:512, :512], [], manifest)] * 4)
    local.logits(x)
    model_tiles = 4 * len(range(0, n_tiles, 4))

    def model_only() -> float:
        t = time.perf_counter()
        for _ in range(0, n_tiles, 4):
            local.logits(x)
        return model_tiles / (time.perf_counter() - t)

    out = raster_root / "labels.tif"

    def through_rpc() -> float:
        with SegmenterClient(server.address) as client:
            t = time.perf_counter()
            client.predict_raster(str(src), model=model, output_uri=str(out), overwrite=True)
            return n_tiles / (time.perf_counter() - t)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    # Alternate whole rounds, so that machine noise hits both rates alike; report medians.
    rpc_rates, model_rates = [], []
    for _ in range(rounds):
        rpc_rates.append(through_rpc())
        model_rates.append(model_only())
    stop.set()
    watcher.join()
    with rasterio.open(out) as ds, rasterio.open(src) as ref:
        geo_kept = ds.crs == ref.crs and ds.transform == ref.transform
    rpc_rate, model_rate = statistics.median(rpc_rates), statistics.median(model_rates)
    return {"raster_px": f"{size}x{size}", "tiles": n_tiles, "rounds": rounds,
            "rpc_tiles_per_s": round(rpc_rate, 2), "model_only_tiles_per_s": round(model_rate, 2),
            "ratio": round(rpc_rate / model_rate, 3),
            "per_round_ratios": [round(a / b, 3) for a, b in zip(rpc_rates, model_rates)],
            "target_ratio": 0.85, "crs_and_transform_kept": geo_kept,
            "server_rss_before_mib": round(baseline_rss), "server_peak_rss_mib": round(peak["rss"])}


def batching(repo: Path, model: str, raster_root: Path, clients: int, calls: int) -> dict:
    from tests.support.synthetic import make_scene
    from dial_client import SegmenterClient

    image = make_scene(512, 512, seed=2).image
    results = {}
    for label, flags in (("batching_off", ["--max-queue-delay-ms", "0"]),
                         ("batching_on", ["--max-queue-delay-ms", "5", "--max-batch-size", "4"])):
        server = start_segmenter(repo, raster_root, *flags)
        try:
            with SegmenterClient(server.address) as warm:
                warm.predict(image, model=model)

            def work(_):
                latencies = []
                with SegmenterClient(server.address) as client:
                    for _ in range(calls):
                        t = time.perf_counter()
                        client.predict(image, model=model)
                        latencies.append(time.perf_counter() - t)
                return latencies

            t = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                latencies = [x for part in pool.map(work, range(clients)) for x in part]
            wall = time.perf_counter() - t
            results[label] = {"throughput_per_s": round(len(latencies) / wall, 2),
                              "p50_ms": round(1000 * statistics.median(latencies), 1),
                              "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1)}
        finally:
            server.stop()
    results["throughput_ratio_on_vs_off"] = round(
        results["batching_on"]["throughput_per_s"] / results["batching_off"]["throughput_per_s"], 3)
    results["clients"] = clients
    return results


def main(argv: list[str] | None = None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(prog="bench_segmenter")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--raster-px", type=int, default=4000)
    parser.add_argument("--raster-rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--model-repo", help="measure this repository's --model instead of the shipped landcover")
    parser.add_argument("--model", help="NAME[:VERSION] in --model-repo")
    parser.add_argument("--sections", default="predict,clicks,raster,batching",
                        help="comma-separated subset of predict, clicks, raster, batching")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "segmenter.json"))
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    unknown = sections - {"predict", "clicks", "raster", "batching"}
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from predict, clicks, raster, batching")
    if bool(args.model_repo) != bool(args.model):
        parser.error("--model-repo and --model go together")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        raster_root = work / "rasters"
        raster_root.mkdir()
        repo, model = (Path(args.model_repo), args.model) if args.model_repo else benchmark_repo(work)
        report = {"model": model, "cpu_count": os.cpu_count()}
        server = start_segmenter(repo, raster_root)
        try:
            if "predict" in sections:
                report["predict"] = predict_overhead(server, repo, model, args.repeats)
            if "clicks" in sections:
                report["clicks"] = click_cost(server, model, args.repeats)
            if "raster" in sections:
                report["raster"] = raster_throughput(server, repo, model, raster_root, args.raster_px,
                                                     args.raster_rounds)
        finally:
            server.stop()
        if "batching" in sections:
            report["dynamic_batching"] = batching(repo, model, raster_root, args.clients, args.calls)
    write_report(report, args.json)
    return report


if __name__ == "__main__":
    main()
