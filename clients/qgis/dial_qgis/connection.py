"""Connection settings (addresses, TLS, token) and the health check that lists the server's models."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

SETTINGS_GROUP = "dial"


@dataclass
class ConnectionSettings:
    """Where the three DIAL services listen; `make up` puts them on 50051, 50052 and 50053."""

    segmenter: str = "127.0.0.1:50051"
    adapter: str = "127.0.0.1:50052"
    acquisition: str = "127.0.0.1:50053"
    tls: bool = False
    root_cert: str = ""   # PEM file; empty: the system's roots
    token: str = ""
    # The Adapter reads the layer's file itself (a path it shares, under its --raster-roots) instead of
    # the plugin sending the window's pixels: less traffic for large windows on a shared volume.
    server_reads_file: bool = False

    def _common(self) -> dict:
        from dial_client import TlsConfig

        tls = TlsConfig.from_files(self.root_cert or None) if self.tls else None
        return {"token": self.token or None, "tls": tls}

    def segmenter_client(self, **options):
        from dial_client import SegmenterClient

        return SegmenterClient(self.segmenter, **self._common(), **options)

    def adapter_client(self):
        from dial_client import AdapterClient

        return AdapterClient(self.adapter, **self._common())

    def acquisition_client(self):
        from dial_client import AcquisitionClient

        return AcquisitionClient(self.acquisition, **self._common())

    def save(self, settings) -> None:
        """Into a ``QgsSettings`` (the token too: QGIS keeps it in the user's profile)."""
        for key, value in asdict(self).items():
            settings.setValue(f"{SETTINGS_GROUP}/{key}", value)

    @classmethod
    def load(cls, settings) -> "ConnectionSettings":
        values = {}
        for f in fields(cls):
            value = settings.value(f"{SETTINGS_GROUP}/{f.name}", f.default)
            values[f.name] = value in (True, "true", "True", "1") if f.type in (bool, "bool") else str(value)
        return cls(**values)


PROVIDERS = {"TensorrtExecutionProvider": "TensorRT", "CUDAExecutionProvider": "CUDA",
             "CPUExecutionProvider": "CPU"}


@dataclass(frozen=True)
class ModelInfo:
    """What the plugin needs of a served model."""

    name: str
    version: str
    runs_on: str          # CPU, CUDA or TensorRT
    ready: bool
    classes: tuple[tuple[int, str, str], ...]  # (id, name, "#rrggbb")
    bands: int
    input_dtype: str
    tile_px: int

    @property
    def label(self) -> str:
        state = "" if self.ready else ", loading"
        return f"{self.name}:{self.version} ({self.runs_on}{state})"

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(name for _, name, _ in self.classes)


def model_info(model) -> ModelInfo:
    """The plugin's view of a ``dial_client.ModelInfo``."""
    return ModelInfo(
        name=model.name, version=model.version,
        runs_on=PROVIDERS.get(model.provider, model.provider or "not loaded"),
        ready=model.ready, classes=tuple(tuple(c) for c in model.classes),
        bands=len(model.bands), input_dtype=model.input_dtype or "unspecified",
        tile_px=model.tile_px or 512)


def health_check(settings: ConnectionSettings) -> list[ModelInfo]:
    """The segmenter's models and where each runs; raises a ``DialError`` when the server cannot be used."""
    # The Check button answers at once: a server that is not up is reported, not waited for.
    with settings.segmenter_client(wait_for_ready=False) as client:
        return [model_info(m) for m in client.list_models()]
