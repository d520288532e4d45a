"""``dial eval-al``: simulate annotating patches in a strategy's order and report mIoU per patch."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dial.model import DEFAULT_REPOSITORY


def register(sub) -> None:
    from dial.adaptation.settings import VARIANTS  # not disca: the adapter imports torch

    p = sub.add_parser("eval-al", help="simulate annotating patches in a strategy's order and report mIoU per patch")
    p.add_argument("--model", required=True, help="NAME[:VERSION]")
    p.add_argument("--data", required=True)
    p.add_argument("--model-repo", default=DEFAULT_REPOSITORY)
    p.add_argument("--binary", help="evaluate one named class against the rest")
    p.add_argument("--strategy", required=True, help="a strategy name, or 'all' to compare every strategy")
    p.add_argument("--patches", type=int, default=20, help="patches annotated per image (one click each)")
    p.add_argument("--patch-px", type=int, default=256)
    p.add_argument("--reduction", choices=["mean", "sum"], default="mean")
    p.add_argument("--cost-weighting", action="store_true", help="divide patch scores by their estimated click cost")
    p.add_argument("--rescore", action="store_true",
                   help="re-rank the patches not yet annotated after every click, with the refined model")
    p.add_argument("--mode", default="ac", help="how clicks are used: ac, disca or both")
    p.add_argument("--variant", choices=VARIANTS, default="full", help="disca/both: which parameters adapt")
    p.add_argument("--learning-rate", type=float,
                   help="disca/both: Adam lr (default: the model's tuned rate, else the variant's)")
    p.add_argument("--recall-weight", type=float,
                   help="disca/both: lambda of the L1 recall term (default: the model's, else DISCA's)")
    p.add_argument("--split", choices=["val", "all"], default="val")
    p.add_argument("--runtime", choices=["onnx", "torch"], default="onnx")
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--seed", type=int, default=0, help="random's patch order")
    p.add_argument("--adapt-seed", type=int, default=0,
                   help="disca/both: seed of the adaptation's crop draws, to measure a strategy's own spread")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", required=True, dest="json_out")
    p.add_argument("--plot", help="write the mIoU-per-patch curves as a PNG")
    p.set_defaults(handler=run)


def run(args) -> int:
    from dial.acquisition import STRATEGIES
    from dial.evaluation.active import ActiveConfig, run_active_learning

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    strategies = tuple(STRATEGIES) if args.strategy == "all" else tuple(args.strategy.split(","))
    config = ActiveConfig(model=args.model, data=args.data, repo=args.model_repo, binary=args.binary,
                          strategies=strategies, patches=args.patches, patch_px=args.patch_px,
                          reduction=args.reduction, cost_weighting=args.cost_weighting, mode=args.mode,
                          variant=args.variant, learning_rate=args.learning_rate,
                          recall_weight=args.recall_weight, split=args.split,
                          runtime=args.runtime, limit=args.limit, seed=args.seed,
                          adapt_seed=args.adapt_seed, rescore=args.rescore)
    report = run_active_learning(config, log=lambda m: print(m, file=sys.stderr, flush=True))
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    per_strategy = report.get("strategies", {report.get("strategy"): report})
    if args.plot:
        from dial.evaluation.plots import plot_iou_curves

        curves = {name: r["miou"] for name, r in per_strategy.items() if "miou" in r}
        plot_iou_curves({f"{name} (auc {100 * per_strategy[name]['auc']:.2f})": c for name, c in curves.items()},
                        args.plot, title=f"{report['dataset']}: {report['mode']}, {report['patch_px']} px patches",
                        xlabel="patches annotated per image (one click each)")
    print(json.dumps({name: ({"auc": r["auc"], "miou_0": r["miou"][0], "miou_last": r["miou"][-1]}
                             if "miou" in r else r) for name, r in per_strategy.items()}))
    return 0
