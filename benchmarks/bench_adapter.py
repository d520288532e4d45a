"""DISCA costs on one 512x512 tile, both variants and AC side by side in one run.

For each round, in turn: an AC-only prediction (ONNX Runtime, the serving
path, and eager torch, the path adaptation predicts with), then one
adaptation plus the AC prediction that follows it (one "click") for the
``full`` and the ``fast`` variant. Medians after a warm-up round. Ten
clicks spread over the tile, so every adaptation trains on the most
crops it may (``max_crops`` crops of ``crop_px``).

Memory per session counts what a session holds (its copy of the weights,
the optimiser state after an adaptation, the image and p0), and the
process's resident memory growth over several live sessions.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import ROOT, write_report
GiB = 1024**3


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def session_bytes(adapter) -> int:
    tensors = list(adapter.model.state_dict().values())
    for state in adapter.optimiser.state.values():
        tensors += [v for v in state.values() if torch.is_tensor(v)]
    return sum(t.numel() * t.element_size() for t in tensors) + adapter.image.nbytes + adapter.p0.nbytes


def main(argv: list[str] | None = None) -> dict:
    import argparse

    from benchmarks.common import benchmark_repo
    from dial.adaptation.disca import DiscaAdapter, DiscaSettings, crop_windows
    from dial.clicks import Click
    from dial.inference.predictors import OnnxPredictor, TorchPredictor
    from dial.inference.tiling import predict_labels
    from dial.model.repository import ModelRepository

    parser = argparse.ArgumentParser(prog="bench_adapter")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--crop-px", type=int, default=256)
    parser.add_argument("--sessions", type=int, default=4, help="live sessions for the resident-memory figure")
    # One thread by default: on a shared CPU, OpenMP's spin-waiting threads
    # made a 512^2 forward pass 4.6x slower with 2 threads than with 1.
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "adapter.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        repo_root, name = benchmark_repo(Path(tmp))
        repo = ModelRepository(repo_root)
        model, manifest = repo.load_torch(name)
        onnx = OnnxPredictor(repo.onnx_path(name), manifest, provider="cpu")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (512, 512, manifest.n_bands)).astype(manifest.input_dtype)
    clicks = [Click(int(r), int(c), int(k)) for r, c, k in
              zip(rng.integers(0, 512, 10), rng.integers(0, 512, 10), rng.integers(0, manifest.n_classes, 10))]
    # Resident memory first: after the timings, freed heap would absorb new sessions unseen.
    before = _rss_bytes()
    live = []
    for _ in range(args.sessions):
        adapter = DiscaAdapter(model, manifest, DiscaSettings(variant="full", steps=1, crop_px=args.crop_px))
        adapter.start(image)
        adapter.adapt(clicks[:1])
        live.append(adapter)
    rss_per_session = (_rss_bytes() - before) / args.sessions
    del live
    adapters = {v: DiscaAdapter(model, manifest, DiscaSettings(variant=v, steps=args.steps, crop_px=args.crop_px))
                for v in ("full", "fast")}
    for adapter in adapters.values():
        adapter.start(image)
    torch_predictor = TorchPredictor(model, manifest)

    timings: dict[str, list[float]] = {k: [] for k in
                                       ("ac_onnx", "ac_torch", "full_adapt", "full_click", "fast_adapt", "fast_click")}
    for round_index in range(args.repeats + 1):
        sample: dict[str, float] = {}
        t = time.perf_counter()
        predict_labels(onnx, image, clicks)
        sample["ac_onnx"] = time.perf_counter() - t
        t = time.perf_counter()
        predict_labels(torch_predictor, image, clicks)
        sample["ac_torch"] = time.perf_counter() - t
        for variant, adapter in adapters.items():
            t = time.perf_counter()
            adapter.adapt(clicks)
            adapted = time.perf_counter()
            adapter.predict_labels(clicks)
            sample[f"{variant}_adapt"] = adapted - t
            sample[f"{variant}_click"] = time.perf_counter() - t
        if round_index:  # round 0 warms up
            for key, value in sample.items():
                timings[key].append(value)
    medians = {k: statistics.median(v) for k, v in timings.items()}

    held = {v: session_bytes(a) for v, a in adapters.items()}

    report = {
        "model": f"{manifest.name}:{manifest.version}",
        "model_source": ("the shipped landcover model" if name == "landcover"
                         else "a randomly initialised Linknet/mobilenet_v2 (models/landcover absent)"),
        "tile_px": 512, "steps": args.steps, "crop_px": args.crop_px,
        "crops_per_adaptation": len(crop_windows(clicks, (512, 512), args.crop_px,
                                                 adapters["full"].settings.max_crops)),
        "torch_threads": torch.get_num_threads(), "repeats": args.repeats,
        "seconds_median": {k: round(v, 4) for k, v in medians.items()},
        "seconds_per_step": {v: round(medians[f"{v}_adapt"] / args.steps, 4) for v in adapters},
        "click_cost_vs_ac_torch": {v: round(medians[f"{v}_click"] / medians["ac_torch"], 1) for v in adapters},
        "fast_over_full_click": round(medians["fast_click"] / medians["full_click"], 3),
        "session_bytes_held": held,
        "session_rss_bytes_measured": int(rss_per_session),
        "session_rss_note": "resident growth per live full-variant session after one adaptation, including the "
                            "allocator's transient peak of that adaptation",
        "sessions_per_4GiB": {v: int(4 * GiB // b) for v, b in held.items()},
    }
    write_report(report, args.json)
    print()
    print("| per 512^2 tile | seconds (median) |")
    print("|---|---|")
    for key, value in medians.items():
        print(f"| {key} | {value:.3f} |")
    return report


if __name__ == "__main__":
    main()
