"""CLI commands for active learning: ``train-confidnet``, ``train-metaseg`` and ``eval-al``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT_REPO = "models"


def training_images(dataset, manifest, binary: str | None, limit: int | None):
    """The model's own training images when ``dataset`` is its training set (never its validation images)."""
    training = manifest.training or {}
    if training.get("dataset") == dataset.name and training.get("binary_class") == binary:
        dataset, note = dataset.subset(training["split"]["train"]), "train (recorded in the model manifest)"
    else:
        note = "all (the model was not trained on this dataset)"
    if limit:
        dataset = dataset.subset([s.name for s in dataset.samples[:limit]])
    return dataset, note


def _common(p) -> None:
    p.add_argument("--model", required=True, help="NAME[:VERSION]")
    p.add_argument("--data", required=True, help="labelled dataset folder (images/, masks/)")
    p.add_argument("--model-repo", default=DEFAULT_REPO)
    p.add_argument("--binary", help="one named class against the rest, as the model was trained")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")


def _add_train_confidnet(sub) -> None:
    p = sub.add_parser("train-confidnet", help="train a ConfidNet head on a frozen model and store it with the model")
    _common(p)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop-px", type=int, default=256)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--pool", type=int, default=16, help="average-pool factor of the decoder features the head reads")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_run_train_confidnet)


def _run_train_confidnet(args) -> int:
    import torch

    from dial.acquisition.confidnet import ConfidNetConfig, save_head, train_head
    from dial.imagery.dataset import Dataset
    from dial.model.repository import ModelRepository

    if args.threads:
        torch.set_num_threads(args.threads)
    repo = ModelRepository(args.model_repo)
    network, manifest = repo.load_torch(args.model)
    dataset, note = training_images(Dataset.open(args.data, binary=args.binary), manifest, args.binary, args.limit)
    config = ConfidNetConfig(iterations=args.iterations, batch_size=args.batch_size, crop_px=args.crop_px,
                             learning_rate=args.learning_rate, pool=args.pool, seed=args.seed)

    def progress(done: int, total: int, loss: float) -> None:
        if done % 25 == 0 or done == total:
            print(f"[{done}/{total}] mse {loss:.4f}", file=sys.stderr, flush=True)

    head, summary = train_head(network, manifest, dataset, config, progress)
    summary["split"] = note
    path = save_head(head, repo.path(args.model), summary)
    print(json.dumps({"model": f"{manifest.name}:{manifest.version}", "head": str(path),
                      "final_mse": summary["final_mse"], "seconds": summary["seconds"], "split": note}))
    return 0


def _add_train_metaseg(sub) -> None:
    p = sub.add_parser("train-metaseg", help="fit the MetaSeg IoU regressors on labelled images and store them")
    _common(p)
    p.add_argument("--use", choices=["gbr", "linear"], default="gbr",
                   help="which regressor the metaseg and metabox strategies use")
    p.add_argument("--runtime", choices=["onnx", "torch"], default="onnx")
    p.set_defaults(handler=_run_train_metaseg)


def _run_train_metaseg(args) -> int:
    from dial.acquisition.metaseg import collect, save_regressors, train_regressors
    from dial.evaluation.interactive import load_predictor
    from dial.imagery.dataset import Dataset
    from dial.inference.tiling import predict_probabilities
    from dial.model.repository import ModelRepository

    repo = ModelRepository(args.model_repo)
    predictor = load_predictor(repo, args.model, args.runtime)
    manifest = predictor.manifest
    dataset, note = training_images(Dataset.open(args.data, binary=args.binary), manifest, args.binary, args.limit)
    data = collect(lambda image: predict_probabilities(predictor, image), dataset, manifest.n_classes)
    regressors, summary = train_regressors(data)
    summary["split"] = note
    path = save_regressors(regressors, repo.path(args.model), summary, use=args.use)
    print(json.dumps({"model": f"{manifest.name}:{manifest.version}", "regressors": str(path)}
                     | {k: v for k, v in summary.items() if k != "images"}))
    return 0


def _add_eval_al(sub) -> None:
    from dial.adaptation.disca import VARIANTS

    p = sub.add_parser("eval-al", help="simulate annotating patches in a strategy's order and report mIoU per patch")
    p.add_argument("--model", required=True, help="NAME[:VERSION]")
    p.add_argument("--data", required=True)
    p.add_argument("--model-repo", default=DEFAULT_REPO)
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
    p.set_defaults(handler=_run_eval_al)


def _run_eval_al(args) -> int:
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


COMMANDS = [_add_train_confidnet, _add_train_metaseg, _add_eval_al]
