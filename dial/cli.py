"""The science commands of the ``dial`` CLI: train and evaluate models.

The console script (``dial_services.cli``) adds the serving commands; this
module stays free of gRPC so the core library can be used without them.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from dial.acquisition.commands import COMMANDS as ACQUISITION_COMMANDS
from dial.imagery.commands import COMMANDS as IMAGERY_COMMANDS

DEFAULT_REPO = "models"


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a click-aware model and write a new version to the repository")
    p.add_argument("--data", required=True, help="dataset folder (images/, masks/, optional legend.json)")
    p.add_argument("--name", required=True, help="model name in the repository")
    p.add_argument("--model-repo", default=DEFAULT_REPO)
    p.add_argument("--binary", help="train on one named class against the rest")
    p.add_argument("--class-names", help="comma-separated class names (value masks have none)")
    p.add_argument("--architecture", default="Linknet")
    p.add_argument("--encoder", default="mobilenet_v2")
    p.add_argument("--crop-px", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--radius-px", type=float,
                   help="click cone radius (default: the --init-from model's, else 10); serving and "
                        "evaluation read it from the manifest")
    p.add_argument("--val-fraction", type=float, default=0.25)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=".checkpoints", help="where resumable checkpoints go")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --workdir")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--max-train-images", type=int)
    p.add_argument("--init-from", help="NAME[:VERSION] to fine-tune (keeps its normalisation, and its click "
                                       "encoding unless --radius-px is given)")
    p.add_argument("--error-clicks", type=float, default=0.0, dest="error_click_fraction",
                   help="share of clicked samples that also get 1..3 clicks in the model's own errors")
    p.add_argument("--label-swaps", type=float, default=0.0, dest="label_swap_fraction",
                   help="share of samples (at most 0.7: 30 %% stay click-free) whose target has 1-2 segments "
                        "relabelled to another class, with 1-3 clicks of the new class in each: clicks "
                        "that the image cannot replace")
    p.add_argument("--bfloat16", action="store_true", help="bfloat16 autocast for the forward pass")
    p.set_defaults(handler=_run_train)


def _run_train(args) -> int:
    from tqdm import tqdm

    from dial.training.trainer import TrainConfig, train

    config = TrainConfig(
        data=args.data, name=args.name, repo=args.model_repo, binary=args.binary,
        class_names=tuple(args.class_names.split(",")) if args.class_names else None,
        architecture=args.architecture, encoder=args.encoder, crop_px=args.crop_px,
        batch_size=args.batch_size, iterations=args.iterations, learning_rate=args.learning_rate,
        max_clicks=args.max_clicks, radius_px=args.radius_px, val_fraction=args.val_fraction,
        split_seed=args.split_seed, seed=args.seed, workdir=args.workdir,
        checkpoint_every=args.checkpoint_every, resume=args.resume, threads=args.threads,
        max_train_images=args.max_train_images, init_from=args.init_from,
        error_click_fraction=args.error_click_fraction, label_swap_fraction=args.label_swap_fraction,
        bfloat16=args.bfloat16,
    )
    bar = tqdm(total=config.iterations, unit="it", disable=None)
    first: list[tuple[int, float]] = []

    def progress(done: int, total: int, loss: float) -> None:
        bar.n = done
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        bar.refresh()
        if not first:
            first.append((done, time.perf_counter()))
        if bar.disable and done % 10 == 0 and done > first[0][0]:
            # A background run's log has no progress bar; a line every ten iterations gives its speed,
            # measured from the first iteration of this process (a resume starts its own clock).
            rate = (time.perf_counter() - first[0][1]) / (done - first[0][0])
            print(f"iteration {done}/{total} loss {loss:.3f} {rate:.2f} s/it", file=sys.stderr, flush=True)

    result = train(config, progress=progress, command="dial " + " ".join(sys.argv[1:]))
    bar.close()
    print(json.dumps({"model": f"{result.manifest.name}:{result.manifest.version}",
                      "seconds": round(result.seconds, 1), "validation": result.validation}, indent=2))
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="simulate an annotator clicking on a dataset and report IoU per click")
    p.add_argument("--model", required=True, help="NAME[:VERSION]")
    p.add_argument("--data", required=True)
    p.add_argument("--model-repo", default=DEFAULT_REPO)
    p.add_argument("--binary", help="evaluate one named class against the rest")
    p.add_argument("--clicks", type=int, default=20)
    from dial.adaptation.disca import DEFAULT_LEARNING_RATES, DEFAULT_RECALL_WEIGHT, VARIANTS, DiscaSettings
    from dial.evaluation.refiners import REFINERS

    p.add_argument("--mode", choices=sorted(REFINERS), default="ac",
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
    p.set_defaults(handler=_run_eval)


def _run_eval(args) -> int:
    from dial.adaptation.disca import DiscaSettings
    from dial.evaluation.interactive import EvalConfig, run_evaluation

    disca = DiscaSettings(variant=args.variant, steps=args.steps, learning_rate=args.learning_rate,
                          recall_weight=args.recall_weight, crop_px=args.crop_px, max_crops=args.max_crops,
                          target_radius_px=args.target_radius_px).validate()
    config = EvalConfig(
        model=args.model, data=args.data, repo=args.model_repo, binary=args.binary, clicks=args.clicks,
        mode=args.mode, split=args.split, clicker=args.clicker, random_top_k=args.random_top_k,
        seed=args.seed, runtime=args.runtime, limit=args.limit, disca=disca, sequential=args.sequential,
        min_region_px=args.min_region_px, threads=args.threads,
    )
    from dial.model.manifest import ManifestError

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


COMMANDS = [_add_train, _add_eval, *ACQUISITION_COMMANDS, *IMAGERY_COMMANDS]


def add_commands(sub) -> None:
    for add in COMMANDS:
        add(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dial", description="DIAL: interactive segmentation of EO imagery")
    parser.add_argument("-v", "--verbose", action="store_true")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def run(parser: argparse.ArgumentParser, argv=None) -> int:
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.handler(args) or 0)


def main(argv=None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
