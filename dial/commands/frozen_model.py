"""What ``dial train-confidnet`` and ``dial train-metaseg`` share: both fit a head on a frozen model.

The flags that name the model and its labelled data, and the rule that picks
the images a head is fitted on.
"""
from __future__ import annotations

from dial.model import DEFAULT_REPOSITORY


def add_model_and_data_arguments(p) -> None:
    p.add_argument("--model", required=True, help="NAME[:VERSION]")
    p.add_argument("--data", required=True, help="labelled dataset folder (images/, masks/)")
    p.add_argument("--model-repo", default=DEFAULT_REPOSITORY)
    p.add_argument("--binary", help="one named class against the rest, as the model was trained")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")


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
