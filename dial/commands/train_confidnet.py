"""``dial train-confidnet``: train a ConfidNet head on a frozen model and store it with the model."""
from __future__ import annotations

import json
import sys

from dial.commands.frozen_model import add_model_and_data_arguments, training_images


def register(sub) -> None:
    p = sub.add_parser("train-confidnet", help="train a ConfidNet head on a frozen model and store it with the model")
    add_model_and_data_arguments(p)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop-px", type=int, default=256)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--pool", type=int, default=16, help="average-pool factor of the decoder features the head reads")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run)


def run(args) -> int:
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
