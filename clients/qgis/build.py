"""Build the QGIS plugin zip: the plugin, the DIAL client and the gRPC wheels for QGIS's Python.

    python clients/qgis/build.py [--python-version 3.11] [--platform manylinux2014_x86_64] [--out DIR]

(``make qgis-plugin`` runs it.) The defaults fit Debian 12's QGIS, which runs
on Python 3.11; QGIS on Windows runs its own Python 3.12, so pass
``--python-version 3.12 --platform win_amd64`` there. grpcio, grpcio-status
and protobuf are pinned to the versions in constraints.txt, the ones the
client's generated code was made with. The zip installs with QGIS's
Plugins > Manage and Install Plugins > Install from ZIP.
"""
from __future__ import annotations

import argparse
import configparser
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PLUGIN = HERE / "dial_qgis"
CLIENT = ROOT / "clients" / "python" / "dial_client"
# grpcio-status (with googleapis-common-protos, its dependency) decodes the servers' per-field error details;
# grpcio-health-checking holds the grpc.health.v1 stubs the client's readiness checks use.
VENDORED = ("grpcio", "protobuf", "grpcio-status", "grpcio-health-checking")


def pinned(names) -> list[str]:
    """``name==version`` from constraints.txt where pinned there, else the bare name."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)==([^\s#]+).*", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return [f"{n}=={pins[n]}" if n in pins else n for n in names]


def build(out: Path, python_version: str, platform: str) -> Path:
    version = configparser.ConfigParser()
    version.read(PLUGIN / "metadata.txt")
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "dial_qgis"
        shutil.copytree(PLUGIN, stage, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "vendor"))
        vendor = stage / "vendor"
        # With their dependencies (grpcio needs typing-extensions), held to the project's pins.
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--only-binary=:all:",
                        "-c", str(ROOT / "constraints.txt"), "--target", str(vendor), "--python-version",
                        python_version, "--implementation", "cp", "--platform", platform, *pinned(VENDORED)],
                       check=True)
        shutil.copytree(CLIENT, vendor / "dial_client", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for junk in vendor.glob("*.dist-info/RECORD"):
            junk.unlink()
        shutil.rmtree(vendor / "__pycache__", ignore_errors=True)
        shutil.rmtree(vendor / "bin", ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"dial_qgis-{version['general']['version']}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(stage.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(stage.parent))
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.split("\n")[0])
    parser.add_argument("--python-version", default="3.11", help="QGIS's Python (Debian 12: 3.11)")
    parser.add_argument("--platform", default="manylinux2014_x86_64", help="wheel platform tag of QGIS's machine")
    parser.add_argument("--out", default=str(ROOT / "build" / "qgis"))
    args = parser.parse_args(argv)
    print(build(Path(args.out), args.python_version, args.platform))
    return 0


if __name__ == "__main__":
    sys.exit(main())
