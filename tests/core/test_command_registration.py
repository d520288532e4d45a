"""The core's `dial` commands register without torch, and offer what their handlers accept."""
import subprocess
import sys


def test_registering_the_core_commands_imports_no_torch():
    code = (
        "import argparse, sys\n"
        "from dial import commands\n"
        "commands.register(argparse.ArgumentParser().add_subparsers())\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnxruntime'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_eval_offers_exactly_the_modes_it_has_refiners_for():
    from dial.evaluation.modes import MODES
    from dial.evaluation.refiners import REFINERS

    assert sorted(MODES) == sorted(REFINERS)


def test_the_settings_the_parser_reads_are_the_adapters():
    from dial.adaptation import disca, settings

    assert disca.DiscaSettings is settings.DiscaSettings
    assert disca.VARIANTS is settings.VARIANTS
