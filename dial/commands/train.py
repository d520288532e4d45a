"""``dial train``: train a click-aware model and write a new version to the repository."""
from __future__ import annotations

import json
import sys
import time

from dial.model import DEFAULT_REPOSITORY


def register(sub) -> None:
    p = sub.add_parser("train", help="train a click-aware model and write a new version to the repository")
    p.add_argument("--data", required=True, help="dataset folder (images/, masks/, optional legend.json)")
    p.add_argument("--name", required=True, help="model name in the repository")
    p.add_argument("--model-repo", default=DEFAULT_REPOSITORY)
    p.add_argument("--binary", help="train on one named class against the rest")
    p.add_argument("--class-names", help="comma-separated class names (value masks have none)")
    p.add_argument("--architecture", default="Linknet")
    p.add_argument("--encoder", default="mobilenet_v2")
    p.add_argument("--crop-px", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--fusion-learning-rate", type=float,
                   help="peak rate of the +click-fusion path (default 10x --learning-rate); a low "
                        "--learning-rate then keeps the fine-tuned base close to its click-free accuracy")
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
    p.add_argument("--freeze-base", action="store_true",
                   help="train only the +click-fusion path of the --init-from model; its base network keeps "
                        "its weights and batch-norm statistics, so the click-free map does not change")
    p.set_defaults(handler=run)


def run(args) -> int:
    from tqdm import tqdm

    from dial.training.trainer import TrainConfig, train

    config = TrainConfig(
        data=args.data, name=args.name, repo=args.model_repo, binary=args.binary,
        class_names=tuple(args.class_names.split(",")) if args.class_names else None,
        architecture=args.architecture, encoder=args.encoder, crop_px=args.crop_px,
        batch_size=args.batch_size, iterations=args.iterations, learning_rate=args.learning_rate,
        fusion_learning_rate=args.fusion_learning_rate,
        max_clicks=args.max_clicks, radius_px=args.radius_px, val_fraction=args.val_fraction,
        split_seed=args.split_seed, seed=args.seed, workdir=args.workdir,
        checkpoint_every=args.checkpoint_every, resume=args.resume, threads=args.threads,
        max_train_images=args.max_train_images, init_from=args.init_from,
        error_click_fraction=args.error_click_fraction, label_swap_fraction=args.label_swap_fraction,
        bfloat16=args.bfloat16, freeze_base=args.freeze_base,
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
