"""Typed service configuration from flags and ``DIAL_*`` environment variables.

Flags win over the environment, the environment over defaults. Everything
is validated once at start-up by pydantic, and a bad value stops the server
with a message naming the setting, rather than failing on the first request.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MiB = 1024 * 1024


class ServerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "0.0.0.0"
    port: int = Field(50051, ge=0, le=65535)
    metrics_port: int = Field(0, ge=0, le=65535, description="0 disables the Prometheus endpoint")
    max_message_bytes: int = Field(64 * MiB, ge=MiB, le=1024 * MiB)
    max_workers: int = Field(8, ge=1, le=256)
    max_concurrent_rpcs: int = Field(64, ge=1, description="beyond this, calls get RESOURCE_EXHAUSTED")
    grace_seconds: float = Field(20.0, ge=0, description="how long SIGTERM waits for in-flight calls")
    raster_roots: tuple[Path, ...] = ()
    raster_schemes: tuple[str, ...] = ("file",)
    max_image_px: int = Field(8192 * 8192, ge=1, description="largest height*width accepted in one message")
    max_raster_px: int = Field(40000 * 40000, ge=1)
    max_clicks: int = Field(10000, ge=1)
    tls_cert: Path | None = Field(None, description="PEM certificate chain; with tls_key, serve TLS only")
    tls_key: Path | None = None
    tls_client_ca: Path | None = Field(None, description="require client certificates signed by this CA (mTLS)")
    auth_tokens_file: Path | None = Field(None, description="'caller:sha256(token)' lines; enables bearer tokens")
    # Below max_workers (checked at start-up), so one caller can never hold every worker thread.
    max_calls_per_caller: int = Field(4, ge=1, description="with auth on, concurrent calls one caller may run")
    max_request_bytes_per_caller: int | None = Field(None, ge=1, description="with auth on; default max_message_bytes")
    health_port: int = Field(0, ge=0, le=65535,
                             description="plaintext port serving only grpc.health.v1 (kubelet probes speak no TLS)")
    # A client stream holds a worker thread while the server waits for its next message, so a caller
    # that opens streams and sends nothing would otherwise keep those threads for ever.
    stream_idle_timeout_seconds: float = Field(
        30.0, gt=0, description="a client stream that sends no message for this long is ended (DEADLINE_EXCEEDED)")
    stream_read_timeout_seconds: float = Field(
        900.0, gt=0, description="longest a client may take to send a whole request stream (DEADLINE_EXCEEDED)")

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
                f"max_calls_per_caller (--max-calls-per-caller, DIAL_MAX_CALLS_PER_CALLER) is "
                f"{self.max_calls_per_caller} but must be below max_workers (--max-workers, DIAL_MAX_WORKERS), "
                f"which is {self.max_workers}: otherwise one caller can take every worker thread and starve the others")
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

    @field_validator("raster_schemes", mode="before")
    @classmethod
    def _split_schemes(cls, value):
        if isinstance(value, str):
            return tuple(s.strip() for s in value.split(",") if s.strip())
        return value


class ModelServingConfig(ServerConfig):
    model_repo: Path = Path("models")
    model_cache: Path | None = None
    provider: Literal["auto", "tensorrt", "cuda", "cpu"] = "auto"
    intra_op_threads: int = Field(0, ge=0)

    @field_validator("model_repo")
    @classmethod
    def _repo_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"model repository {value} is not a folder")
        return value


class SessionStoreConfig(ModelServingConfig):
    """A service that uses the Adapter's session store: the Adapter writes it, Acquisition ranks from it."""

    session_store: Path = Path(".dial/sessions")
    session_ttl_seconds: float = Field(24 * 3600.0, ge=0, description="idle time before a session expires; 0 never")


class SegmenterConfig(ModelServingConfig):
    port: int = Field(50051, ge=0, le=65535)
    max_batch_size: int = Field(4, ge=1, le=64)
    # Off by default: on 2-core CPUs batching measured 0.74-0.96x the throughput
    # of unbatched calls (benchmarks/bench_segmenter.py); on a GPU, set 2-5 ms.
    max_queue_delay_ms: float = Field(0.0, ge=0, le=1000, description="0 disables dynamic batching")
    max_queue_size: int = Field(64, ge=1)
    raster_batch_size: int = Field(4, ge=1, le=64)
    # Half of the pod's 4 GiB limit: the rest is for the models, ONNX Runtime and the process itself.
    max_inflight_bytes: int = Field(
        2048 * MiB, ge=MiB, description="memory that Predict and PredictRaster calls in flight may hold together; "
                                        "a call that does not fit gets RESOURCE_EXHAUSTED")


C = TypeVar("C", bound=ServerConfig)


class ConfigError(SystemExit):
    def __init__(self, message: str):
        super().__init__(f"configuration error: {message}")


def load_config(cls: type[C], flags: dict | None = None, environ: dict | None = None) -> C:
    """Build ``cls`` from flags (None means unset) over ``DIAL_<FIELD>`` variables."""
    environ = os.environ if environ is None else environ
    values = {}
    for name in cls.model_fields:
        flag = (flags or {}).get(name)
        if flag is not None:
            values[name] = flag
        elif f"DIAL_{name.upper()}" in environ:
            values[name] = environ[f"DIAL_{name.upper()}"]
    try:
        return cls(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])} (DIAL_{str(e['loc'][0]).upper()}): {e['msg']}"
            if e["loc"] else e["msg"]
            for e in error.errors()
        )
        raise ConfigError(problems) from None
