"""``dial eval``: simulate an annotator clicking on a dataset and report IoU per click."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dial.model import DEFAULT_REPOSITORY


def register(sub) -> None:
    # The light modules only: the refiners and the adapter import torch, which `dial --help` need not.
    from dial.adaptation.settings import DEFAULT_LEARNING_RATES, DEFAULT_RECALL_WEIGHT, VARIANTS, DiscaSettings
    from dial.evaluation.modes import MODES

    p = sub.add_parser("eval", help="simulate an annotator clicking on a dataset and report IoU per click")
    p.add_argument("--model", required=True, help="NAME[:VERSION]")
    p.add_argument("--data", required=True)
    p.add_argument("--model-repo", default=DEFAULT_REPOSITORY)
    p.add_argument("--binary", help="evaluate one named class against the rest")
    p.add_argument("--clicks", type=int, default=20)
    p.add_argument("--mode", choices=sorted(MODES), default="ac",
                   help="how clicks are used: ac (clicks as channels), disca (adapt after every click), "
                        "both (adapt only when a click lands in a large wrong region), superpixel (no learning: a "
                        "click relabels its SLIC superpixel where the map agrees with the clicked pixel), ac-superpixel "
                        "(ac, then that rule on the ac map for every click)")
    p.add_argument("--variant", choices=VARIANTS, default="full", help="disca/both: which parameters adapt")
    p.add_argument("--steps", type=int, default=10, help="disca/both: optimiser steps per click")
    p.add_argument("--learning-rate", type=float,
                   help="disca/both: Adam lr (default: the model's tuned rate for the variant, else "
                        f"{DEFAULT_LEARNING_RATES})")
    p.add_argument("--recall-weight", type=float,
                   help="disca/both: lambda of the L1 recall term (default: the model's, else "
                        f"{DEFAULT_RECALL_WEIGHT})")
    p.add_argument("--crop-px", type=int, default=256, help="disca/both: side of the training crops")
    p.add_argument("--max-crops", type=int, default=DiscaSettings.max_crops,
                   help="disca/both: training crops per step: the latest click's and a draw among the others")
    p.add_argument("--target-radius-px", type=int, default=DiscaSettings.target_radius_px,
                   help="disca/both: radius of the disc each click supervises")
    p.add_argument("--sequential", action="store_true",
                   help="disca/both: keep the adapted weights from one image to the next")
    p.add_argument("--min-region-px", type=int, default=4096,
                   help="both: adapt when the wrong region under a click is at least this many pixels")
    p.add_argument("--split", choices=["val", "all"], default="val",
                   help="val: the validation images recorded in the model's manifest (when --data is the "
                        "dataset the model was trained on); all: every image in --data")
    p.add_argument("--clicker", choices=["largest", "class_cycling"], default="largest")
    p.add_argument("--random-top-k", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runtime", choices=["onnx", "torch"], default="onnx")
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--threads", type=int, default=0, help="inference threads (default: every core)")
    p.add_argument("--json", required=True, dest="json_out")
    p.add_argument("--plot", help="write the IoU-per-click curve as a PNG")
    p.set_defaults(handler=run)


def run(args) -> int:
    from dial.adaptation.settings import DiscaSettings
    from dial.evaluation.interactive import EvalConfig, run_evaluation
    from dial.model.manifest import ManifestError

    disca = DiscaSettings(variant=args.variant, steps=args.steps, learning_rate=args.learning_rate,
                          recall_weight=args.recall_weight, crop_px=args.crop_px, max_crops=args.max_crops,
                          target_radius_px=args.target_radius_px).validate()
    config = EvalConfig(
        model=args.model, data=args.data, repo=args.model_repo, binary=args.binary, clicks=args.clicks,
        mode=args.mode, split=args.split, clicker=args.clicker, random_top_k=args.random_top_k,
        seed=args.seed, runtime=args.runtime, limit=args.limit, disca=disca, sequential=args.sequential,
        min_region_px=args.min_region_px, threads=args.threads,
    )
    try:
        report = run_evaluation(config, log=lambda m: print(m, file=sys.stderr))
    except ManifestError as error:
        # A model that cannot be used as asked is the user's to fix: say how, without a traceback.
        print(f"dial eval: error: {error}", file=sys.stderr)
        return 2
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        from dial.evaluation.plots import plot_iou_curves

        plot_iou_curves({f"{report['model']} ({report['mode']})": report["miou"]}, args.plot,
                        title=f"{report['dataset']}: mIoU per click")
    print(json.dumps({k: report[k] for k in ("model", "mode", "images") if k in report}
                     | {"miou_0": report["miou"][0], f"miou_{args.clicks}": report["miou"][-1]}))
    return 0
