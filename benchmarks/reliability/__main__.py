"""``python -m benchmarks.reliability PART [PART ...]``: run the reliability harness, write JSON and Markdown."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks.reliability import faults, fuzz, load, overload
from tests.support.tiny_model import train_tiny
from benchmarks.reliability.report import PARTS, render, verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("parts", nargs="+", choices=(*PARTS, "all"))
    parser.add_argument("--model-repo", type=Path, default=Path("models"))
    parser.add_argument("--model", help="model name (default: the first in the repository)")
    parser.add_argument("--train-tiny", action="store_true", help="train a tiny model into a temporary folder")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each load test")
    parser.add_argument("--image-px", type=int, default=256)
    parser.add_argument("--overload-clients", type=int, default=16)
    parser.add_argument("--fuzz-requests", type=int, default=400)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, help="write the results document here")
    args = parser.parse_args(argv)
    parts = PARTS if "all" in args.parts else tuple(p for p in PARTS if p in args.parts)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dial-reliability-") as scratch_dir:
        scratch = Path(scratch_dir)
        repo, model = args.model_repo, args.model
        if args.train_tiny:
            repo, model = train_tiny(scratch)
        from dial.model.repository import ModelRepository

        repository = ModelRepository(repo)
        if model is None:
            if not repository.names():
                parser.error(f"{repo} holds no models; pass --model-repo or --train-tiny")
            model = repository.names()[0]
        manifest = repository.manifest(model)
        results: dict = {"model": f"{manifest.name}:{manifest.version}", "parts": list(parts)}

        def step(name, function, *a, **kw):
            print(f"-- {name}", file=sys.stderr, flush=True)
            part, test = name.split(".")
            try:
                outcome = function(*a, **kw)
            except Exception:  # noqa: BLE001 - a harness failure is a result too, and the others still run
                traceback.print_exc()
                outcome = {"harness_error": traceback.format_exc(limit=3)[-1500:]}
            results.setdefault(part, {})[test] = outcome

        common = (repo, model, scratch)
        if "load" in parts:
            for service, function in (("segmenter", load.segmenter_load), ("adapter", load.adapter_load),
                                      ("acquisition", load.acquisition_load)):
                step(f"load.{service}", function, *common, args.clients, args.seconds, args.image_px)
        if "overload" in parts:
            step("overload.segmenter", overload.segmenter_overload, *common, args.overload_clients,
                 min(args.seconds, 10.0), args.image_px)
        if "faults" in parts:
            step("faults.adapter_replica_killed", faults.adapter_replica_killed, *common, clients=args.clients)
            step("faults.acquisition_replica_killed", faults.acquisition_replica_killed, *common)
            step("faults.segmenter_restarted_mid_raster", faults.segmenter_restarted_mid_raster, *common)
            step("faults.corrupt_model", faults.corrupt_model, *common)
            step("faults.session_store", faults.store_full_or_read_only, *common)
            step("faults.stores", faults.damaged_records_and_a_full_job_store, *common)
            step("faults.idle_streams", faults.idle_streams, *common, n_bands=manifest.n_bands)
        if "fuzz" in parts:
            step("fuzz.segmenter_and_adapter", fuzz.fuzz, *common, manifest.n_bands, requests=args.fuzz_requests)
    results["harness_seconds"] = round(time.monotonic() - started, 1)
    problems = verdict(results)
    results["problems"] = problems
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    if args.markdown:
        command = " ".join(["python -m benchmarks.reliability", *(argv or sys.argv[1:])])
        args.markdown.write_text(render(results, command))
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
