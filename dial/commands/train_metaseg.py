"""``dial train-metaseg``: fit the MetaSeg IoU regressors on labelled images and store them with the model."""
from __future__ import annotations

import json

from dial.commands.frozen_model import add_model_and_data_arguments, training_images


def register(sub) -> None:
    p = sub.add_parser("train-metaseg", help="fit the MetaSeg IoU regressors on labelled images and store them")
    add_model_and_data_arguments(p)
    p.add_argument("--use", choices=["gbr", "linear"], default="gbr",
                   help="which regressor the metaseg and metabox strategies use")
    p.add_argument("--runtime", choices=["onnx", "torch"], default="onnx")
    p.set_defaults(handler=run)


def run(args) -> int:
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
