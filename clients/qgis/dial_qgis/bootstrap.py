"""The plugin's own copy of ``dial_client``, ``grpcio`` and ``protobuf``.

QGIS runs plugins in its own Python (on Debian, /usr/bin/python3), whose
packaged grpcio and protobuf, where present at all, are far older than the
DIAL client's generated code accepts (grpcio >= 1.85.1, protobuf >= 7.35.1).
``make qgis-plugin`` therefore puts those wheels, built for QGIS's Python,
into ``vendor/`` inside the plugin, and this module puts that folder ahead
of the system's packages. numpy is not vendored: QGIS's own GDAL bindings
are built against the system numpy, and the client works with it.
"""
from __future__ import annotations

import sys
from pathlib import Path

VENDOR = Path(__file__).resolve().parent / "vendor"


def activate() -> None:
    if VENDOR.is_dir() and str(VENDOR) not in sys.path:
        sys.path.insert(0, str(VENDOR))


def client_problem() -> str | None:
    """None when ``dial_client`` imports; else what the user should do, in one sentence."""
    try:
        import dial_client  # noqa: F401
    except Exception as error:  # noqa: BLE001 - any import failure is reported the same way
        loaded = sys.modules.get("google.protobuf")
        version = getattr(loaded, "__version__", "?") if loaded else "none"
        return ("The DIAL client cannot load in QGIS's Python "
                f"({type(error).__name__}: {error}; protobuf {version} is loaded). Install the plugin from the "
                "zip that `make qgis-plugin` builds (it carries grpcio and protobuf for QGIS), then restart QGIS; "
                "if another plugin loads an older protobuf first, disable it.")
    return None
