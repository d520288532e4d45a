"""``dial serve <service>``: run one service, with a flag for each setting of its config.

The flags are made from the config's pydantic fields: the field's name gives
the flag (``max_workers``: ``--max-workers``) and its description the help,
which also names the default and the ``DIAL_*`` variable. A setting is thus
declared once, in ``dial_services.<service>.config``. Flags left out are
``None`` here, so ``load_config`` falls back to the environment, then the
default. Only the config modules are imported to build the parser; a service's
``main`` (which loads torch or ONNX Runtime) only when it is served.
"""
from __future__ import annotations

import argparse
import importlib
import os
import types
import typing
from pathlib import Path

from dial_services.acquisition.config import AcquisitionConfig
from dial_services.adapter.config import AdapterConfig
from dial_services.common.config import ServerConfig, env_for, flag_for, load_config
from dial_services.segmenter.config import SegmenterConfig

# In the order `dial up` starts them and gives them ports (base, base+1, ...).
SERVICES: dict[str, type[ServerConfig]] = {
    "segmenter": SegmenterConfig,
    "adapter": AdapterConfig,
    "acquisition": AcquisitionConfig,
}


def register(sub) -> None:
    serve = sub.add_parser("serve", help="run one service",
                           description="Run one service until SIGTERM. Every setting is a flag or a DIAL_* "
                                       "environment variable; a flag wins over the variable.")
    services = serve.add_subparsers(dest="service", required=True, metavar="SERVICE")
    for name, config in SERVICES.items():
        summary = (importlib.import_module(f"dial_services.{name}").__doc__ or "").strip().splitlines()[0]
        p = services.add_parser(name, help=summary, description=summary)
        add_config_flags(p, config)
        p.set_defaults(handler=run)


def add_config_flags(parser: argparse.ArgumentParser, config: type[ServerConfig]) -> None:
    """One flag per field of ``config``, defaulting to None (unset) so the environment can still apply."""
    for name, field in config.model_fields.items():
        if not field.description:
            raise TypeError(f"{config.__name__}.{name} has no description: it would be a flag without help")
        help_text = f"{field.description} (default: {_shown(field.default)}; {env_for(name)})"
        parser.add_argument(flag_for(name), dest=name, default=None, help=help_text.replace("%", "%%"),
                            **_value_kind(field.annotation))


def config_from(args) -> ServerConfig:
    """The service's config from the parsed flags, the ``DIAL_*`` variables and the defaults, validated."""
    config_class = SERVICES[args.service]
    return load_config(config_class, {name: getattr(args, name) for name in config_class.model_fields})


def run(args) -> int:
    config = config_from(args)
    importlib.import_module(f"dial_services.{args.service}.main").run(config)
    return 0


def _value_kind(annotation) -> dict:
    """What argparse should check itself; ranges and everything else are pydantic's, as for a DIAL_* value."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (annotation,) = (a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is typing.Literal:
        return {"choices": typing.get_args(annotation)}
    if annotation is int:
        return {"type": int, "metavar": "N"}
    if annotation is float:
        return {"type": float, "metavar": "X"}
    if annotation is Path:
        return {"metavar": "PATH"}
    if typing.get_origin(annotation) is tuple:
        return {"metavar": "LIST"}
    return {"metavar": "TEXT"}


def _shown(default) -> str:
    if default is None:
        return "unset"
    if isinstance(default, tuple):
        return ",".join(str(v) for v in default) if default else "none"
    return str(default)
