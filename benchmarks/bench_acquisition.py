"""What ranking one 2000x2000 image costs, per strategy, against a plain prediction.

Every strategy and the plain prediction run in one process on the same image,
interleaved round by round so machine noise hits them alike, after one
warm-up round; the figures are medians, and ``*_ratio_paired`` is the median
of each round's own ratio. The baseline is a plain prediction of
the label map (what ``Predict`` returns), in one of two runtimes:

* torch: every strategy on the eager torch model, against a torch prediction
  (what ODIN, MC dropout and ConfidNet must use);
* onnx: the probability strategies as the service runs them, on ONNX Runtime,
  against an ONNX Runtime prediction.

"map" is the strategy's per-pixel map; "order" adds the patch scores and
their order (the ranking itself, what the paper's cost figures compare with a
prediction); "rank" is what ``RankPatches`` returns: the order plus the click
cost and click hints of every 512 px patch. ``mc_dropout_full`` repeats the
encoder on every pass, to show what running it once saves. Learned heads
come from the model's repository entry when present; otherwise untrained
ones of the same shape stand in (their cost does not depend on their weights).
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, write_report


def load_model(runtime: str, repo_root: Path, name: str):
    from dial.acquisition import AcquisitionModel
    from dial.model.repository import ModelRepository

    return AcquisitionModel.from_repository(ModelRepository(repo_root), name, runtime=runtime)


def ensure_heads(model) -> dict:
    from sklearn.ensemble import GradientBoostingRegressor

    from dial.acquisition.confidnet import ConfidNetHead
    from dial.acquisition.metaseg import feature_names

    stand_ins = {}
    if not model.has_head("confidnet"):
        model.set_head("confidnet", ConfidNetHead(32).eval())
        stand_ins["confidnet"] = "untrained stand-in"
    if not model.has_head("metaseg"):
        rng = np.random.default_rng(0)
        x = rng.random((500, len(feature_names(model.manifest.n_classes))))
        model.set_head("metaseg", GradientBoostingRegressor(n_estimators=100, max_depth=4).fit(x, rng.random(500)))
        stand_ins["metaseg"] = "untrained stand-in"
    return stand_ins


def time_round(jobs: dict, timings: dict) -> None:
    for name, job in jobs.items():
        for part, seconds in job().items():
            timings.setdefault(name, {}).setdefault(part, []).append(seconds)


def measure(model, image, strategies: list[str], repeats: int, patch_px: int, warmup_px: int) -> dict:
    from dial.acquisition import get_strategy, patch_grid, rank_patches
    from dial.inference.tiling import predict_labels

    def prediction(picture):
        started = time.perf_counter()
        predict_labels(model.predictor, picture)
        return {"map": time.perf_counter() - started}

    def ranking(strategy, picture):
        started = time.perf_counter()
        result = strategy.compute(model, picture)
        mapped = time.perf_counter()
        windows = patch_grid(*picture.shape[:2], patch_px)
        np.argsort(-strategy.patch_scores(result, windows), kind="stable")
        ordered = time.perf_counter()
        rank_patches(strategy, result, patch_px=patch_px)
        return {"map": mapped - started, "order": ordered - started,
                "rank": (mapped - started) + (time.perf_counter() - ordered)}

    def round_of(picture):
        jobs = {"prediction": lambda: prediction(picture)}
        for name in strategies:
            jobs[name] = lambda s=get_strategy(name): ranking(s, picture)
        if "mc_dropout" in strategies:
            jobs["mc_dropout_full"] = lambda s=get_strategy("mc_dropout", reuse_encoder=False): ranking(s, picture)
        return jobs

    # Warm-up (lazy loads, first allocations, ONNX Runtime's first-run work)
    # on a crop: it only has to touch every code path once.
    time_round(round_of(image[:warmup_px, :warmup_px]), {})
    timings: dict = {}
    for index in range(repeats):
        time_round(round_of(image), timings)
        # A full round takes minutes on 2 cores: show progress rather than silence.
        latest = {name: round(parts["map"][-1], 2) for name, parts in timings.items()}
        print(f"round {index + 1}/{repeats}: map seconds {latest}", file=sys.stderr, flush=True)
    baseline = timings["prediction"]["map"]
    base = statistics.median(baseline)
    report = {}
    for name, parts in timings.items():
        report[name] = {}
        for part, values in parts.items():
            median = statistics.median(values)
            report[name][f"{part}_seconds"] = round(median, 3)
            report[name][f"{part}_ratio_to_prediction"] = round(median / base, 3)
            # Each round's ratio to that round's prediction, then the median:
            # less sensitive to the machine slowing down for a few rounds.
            paired = statistics.median(v / b for v, b in zip(values, baseline))
            report[name][f"{part}_ratio_paired"] = round(paired, 3)
    return report


def main(argv: list[str] | None = None) -> dict:
    import argparse
    import tempfile

    import torch

    from tests.support.synthetic import make_scene

    parser = argparse.ArgumentParser(prog="bench_acquisition")
    parser.add_argument("--size-px", type=int, default=2000)
    parser.add_argument("--patch-px", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup-px", type=int, default=512, help="side of the crop the warm-up round runs on")
    parser.add_argument("--model-repo", help="repository holding --model (default: the shipped models, "
                                             "or a random model of the same architecture)")
    parser.add_argument("--model", default="landcover")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--strategies", help="comma-separated subset to time (default: all); more repeats of "
                                             "a few strategies give tighter medians than a few of all")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "acquisition.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    image = make_scene(args.size_px, args.size_px, seed=0).image
    report: dict = {"image_px": [args.size_px, args.size_px], "patch_px": args.patch_px,
                    "repeats": args.repeats, "warmup_px": args.warmup_px,
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        from benchmarks.common import benchmark_repo

        if args.model_repo:
            repo_root, name = Path(args.model_repo), args.model
        else:
            repo_root, name = benchmark_repo(Path(tmp))
        torch_model = load_model("torch", repo_root, name)
        report["model"] = f"{torch_model.manifest.name}:{torch_model.manifest.version}"
        report["stand_ins"] = ensure_heads(torch_model)
        from dial.acquisition import STRATEGIES

        chosen = args.strategies.split(",") if args.strategies else list(STRATEGIES)
        unknown = sorted(set(chosen) - set(STRATEGIES))
        if unknown:
            parser.error(f"unknown strategies {unknown}; known: {sorted(STRATEGIES)}")
        report["torch"] = measure(torch_model, image, chosen, args.repeats, args.patch_px, args.warmup_px)
        # The strategies that run on the serving predictor, as the service runs them.
        on_onnx = [s for s in chosen if s in ("random", "entropy", "margin", "metaseg", "metabox")]
        if on_onnx:
            onnx_model = load_model("onnx", repo_root, name)
            ensure_heads(onnx_model)
            report["onnx"] = measure(onnx_model, image, on_onnx, args.repeats, args.patch_px, args.warmup_px)
    write_report(report, args.json)
    return report


if __name__ == "__main__":
    main()
