"""The core's commands of the ``dial`` command line, one module per command.

Each module has ``register(subparsers)``, which adds its sub-command with the
function that runs it as ``handler``. The console script
(``dial_services.cli``) registers these beside the serving commands; nothing
here imports gRPC. Modules are imported when the parser is built, so they keep
their heavy imports (torch, rasterio) inside the handlers.
"""
from __future__ import annotations

import importlib

# In the order ``dial --help`` lists them.
COMMANDS = ("train", "eval", "train_confidnet", "train_metaseg", "eval_al", "vectorize")


def register(subparsers) -> None:
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
