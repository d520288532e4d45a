"""Networks, manifests, ONNX export and the versioned model repository (``models/<name>/<version>/``)."""

# The shipped repository, relative to where a command or service starts: the default of every --model-repo.
# Here rather than in repository.py, which imports torch, so that building the command line stays light.
DEFAULT_REPOSITORY = "models"
