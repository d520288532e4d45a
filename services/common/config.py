"""Typed service configuration: one pydantic field per setting, read from a flag or a ``DIAL_*`` variable.

Each field is declared once, with its description; ``dial serve`` makes a flag
of it (``--max-workers``) and pydantic-settings reads the variable
(``DIAL_MAX_WORKERS``). A flag wins over the environment, the environment over
the default. Everything is validated once at start-up, and a bad value stops
the server with a message naming the setting, its flag and its variable,
rather than failing on the first request.

The settings every server has are here; each service's own are in its
``config.py``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from dial.imagery.opener import remote_prefix_problem
from dial.model import DEFAULT_REPOSITORY

MiB = 1024 * 1024
ENV_PREFIX = "DIAL_"

# Settings that services declare again with their own default keep one description and one range.
GrpcPort = Annotated[int, Field(ge=0, le=65535, description="gRPC port")]
ImagePixels = Annotated[int, Field(ge=1, description="largest height*width of an image accepted in one message")]
ClickCount = Annotated[int, Field(ge=1, description="most clicks accepted in one request")]


def flag_for(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_for(name: str) -> str:
    return ENV_PREFIX + name.upper()


def named(name: str) -> str:
    """A setting as an operator may have set it: ``max_workers (--max-workers, DIAL_MAX_WORKERS)``."""
    return f"{name} ({flag_for(name)}, {env_for(name)})"


class ServerConfig(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", env_prefix=ENV_PREFIX,
        # DIAL_* values are plain text ("/data:/scratch", "file,s3"), split by the fields' own validators,
        # never JSON; a default is checked like a given value (a missing ./models fails at start-up).
        enable_decoding=False, validate_default=True,
    )

    host: str = Field("0.0.0.0", description="address to bind")
    port: GrpcPort = 50051
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus metrics port; 0 disables it")
    max_message_bytes: int = Field(64 * MiB, ge=MiB, le=1024 * MiB,
                                   description="largest gRPC message received or sent, in bytes")
    max_workers: int = Field(8, ge=1, le=256, description="gRPC worker threads: calls served at once")
    max_concurrent_rpcs: int = Field(64, ge=1, description="calls accepted at once, served or waiting for a "
                                                           "worker; beyond this, calls get RESOURCE_EXHAUSTED")
    grace_seconds: float = Field(20.0, ge=0, description="how long SIGTERM waits for in-flight calls")
    raster_roots: tuple[Path, ...] = Field(
        (), description=f"folders rasters may be read from and written to, separated by '{os.pathsep}'")
    raster_schemes: tuple[str, ...] = Field(("file",), description="URI schemes a raster may be named by, "
                                                                   "separated by ','")
    # Off by default: issue 8 closed every network path; this is the deliberate one, prefix by prefix.
    raster_remote_prefixes: tuple[str, ...] = Field(
        (), description="GDAL network paths rasters may also be read from (never written to), separated by ',', "
                        "each ending in '/', e.g. /vsicurl/https://data.example.org/cogs/ or /vsis3/bucket/imagery/")
    max_image_px: ImagePixels = 8192 * 8192
    max_raster_px: int = Field(40000 * 40000, ge=1, description="largest height*width of a raster named by URI")
    max_clicks: ClickCount = 10000
    tls_cert: Path | None = Field(None, description="PEM certificate chain; with tls_key, serve TLS only")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")
    tls_client_ca: Path | None = Field(None, description="require client certificates signed by this CA (mTLS)")
    auth_tokens_file: Path | None = Field(None, description="'caller:sha256(token)' lines; enables bearer tokens")
    # Below max_workers (checked at start-up), so one caller can never hold every worker thread.
    max_calls_per_caller: int = Field(4, ge=1, description="with auth on, concurrent calls one caller may run")
    max_request_bytes_per_caller: int | None = Field(
        None, ge=1, description="with auth on, request bytes one caller may have in flight; unset: max_message_bytes")
    health_port: int = Field(0, ge=0, le=65535,
                             description="plaintext port serving only grpc.health.v1 (kubelet probes speak no TLS)")
    # A client stream holds a worker thread while the server waits for its next message, so a caller
    # that opens streams and sends nothing would otherwise keep those threads for ever.
    stream_idle_timeout_seconds: float = Field(
        30.0, gt=0, description="a client stream that sends no message for this long is ended (DEADLINE_EXCEEDED)")
    stream_read_timeout_seconds: float = Field(
        900.0, gt=0, description="longest a client may take to send a whole request stream (DEADLINE_EXCEEDED)")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        # Flags (passed as init values), then DIAL_* variables: no .env or secrets folder is read behind
        # the operator's back.
        return init_settings, env_settings

    @model_validator(mode="after")
    def _security_files(self):
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        for name in ("tls_cert", "tls_key", "tls_client_ca", "auth_tokens_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: {path} is not a readable file")
        return self

    @model_validator(mode="after")
    def _caller_limit_below_workers(self):
        if self.auth_enabled and self.max_calls_per_caller >= self.max_workers:
            raise ValueError(
                f"{named('max_calls_per_caller')} is {self.max_calls_per_caller} but must be below "
                f"{named('max_workers')}, which is {self.max_workers}: otherwise one caller can take every "
                f"worker thread and starve the others")
        return self

    @property
    def auth_enabled(self) -> bool:
        return self.auth_tokens_file is not None or self.tls_client_ca is not None

    @field_validator("raster_roots", mode="before")
    @classmethod
    def _split_roots(cls, value):
        if isinstance(value, str):
            return tuple(p for p in value.split(os.pathsep) if p)
        return value

    @field_validator("raster_schemes", "raster_remote_prefixes", mode="before")
    @classmethod
    def _split_schemes(cls, value):
        if isinstance(value, str):
            return tuple(s.strip() for s in value.split(",") if s.strip())
        return value

    @field_validator("raster_remote_prefixes")
    @classmethod
    def _remote_prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in value:
            problem = remote_prefix_problem(prefix)
            if problem:
                raise ValueError(f"{prefix!r} {problem}")
        return value


class ModelServingConfig(ServerConfig):
    model_repo: Path = Field(Path(DEFAULT_REPOSITORY), description="model repository folder "
                                                                   "(models/<name>/<version>/)")
    model_cache: Path | None = Field(None, description="writable folder for ONNX exports, when the model "
                                                       "repository is read-only")
    provider: Literal["auto", "tensorrt", "cuda", "cpu"] = Field(
        "auto", description="ONNX Runtime execution provider; auto: TensorRT, then CUDA, then CPU")
    intra_op_threads: int = Field(0, ge=0, description="threads of one inference (ONNX Runtime; the Adapter's "
                                                       "torch); 0: every core")

    @field_validator("model_repo")
    @classmethod
    def _repo_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"model repository {value} is not a folder")
        return value


class SessionStoreConfig(ModelServingConfig):
    """A service that uses the Adapter's session store: the Adapter writes it, Acquisition ranks from it."""

    session_store: Path = Field(Path(".dial/sessions"), description="the Adapter's session store: the Adapter "
                                                                    "checkpoints sessions to it, Acquisition "
                                                                    "reads them to rank a session's image")
    session_ttl_seconds: float = Field(24 * 3600.0, ge=0, description="idle seconds before a session expires "
                                                                      "(and is no longer ranked); 0: never")


C = TypeVar("C", bound=ServerConfig)


class ConfigError(SystemExit):
    def __init__(self, message: str):
        super().__init__(f"configuration error: {message}")


def load_config(cls: type[C], flags: dict | None = None) -> C:
    """Build ``cls`` from flags (None means unset) over ``DIAL_<FIELD>`` variables over defaults."""
    given = {name: value for name, value in (flags or {}).items() if value is not None}
    try:
        return cls(**given)
    except ValidationError as error:
        problems = "; ".join(_problem(e) for e in error.errors())
        raise ConfigError(problems) from None
    except SettingsError as error:  # a DIAL_* value pydantic-settings could not even read
        raise ConfigError(str(error)) from None


def _problem(error: dict) -> str:
    if not error["loc"]:  # a rule across settings, whose message names them
        return error["msg"]
    name = str(error["loc"][0])
    where = ".".join(str(part) for part in error["loc"])
    return f"{where} ({flag_for(name)}, {env_for(name)}): {error['msg']}"
