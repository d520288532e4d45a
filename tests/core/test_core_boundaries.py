"""The core library stays pure: importing all of it pulls in no gRPC or service code."""
import pkgutil
import subprocess
import sys

import pytest

import dial


@pytest.fixture(scope="module")
def fresh_interpreter() -> list[str]:
    """One clean interpreter (torch's import costs seconds): the shim, then smp, then all of dial.

    Prints the smp network built after the shim, then the gRPC, service and
    client modules that importing every core module pulled in.
    """
    modules = [m.name for m in pkgutil.walk_packages(dial.__path__, "dial.")]
    assert len(modules) > 15
    code = (
        "import importlib, sys\n"
        "from dial.model.torchvision_shim import ensure_torchvision_importable\n"
        "ensure_torchvision_importable()\n"
        "import segmentation_models_pytorch as smp\n"
        "m = smp.Linknet(encoder_name='mobilenet_v2', encoder_weights=None, in_channels=4, classes=2)\n"
        "print(type(m).__name__)\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'dial_services', 'dial_client'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.splitlines()


def test_smp_imports_after_the_shim(fresh_interpreter):
    assert fresh_interpreter[0] == "Linknet"


def test_core_never_imports_grpc_or_services(fresh_interpreter):
    assert fresh_interpreter[1:] == [""]


def test_torchvision_shim_only_acts_on_the_known_failure(monkeypatch):
    import importlib

    from dial.model import torchvision_shim

    calls = []

    def broken(name):
        calls.append(name)
        raise RuntimeError("some other torchvision failure")

    monkeypatch.setattr(importlib, "import_module", broken)
    try:
        torchvision_shim.ensure_torchvision_importable()
    except RuntimeError as error:
        assert "some other" in str(error)
    else:
        raise AssertionError("an unrelated import error must propagate")
