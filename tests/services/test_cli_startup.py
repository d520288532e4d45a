"""`dial --help` and the parser of every command (the core's and the serving ones) come up without torch.

Importing torch costs seconds at every start of the console script."""
import subprocess
import sys


def test_building_the_dial_parser_imports_no_torch():
    code = (
        "import sys\n"
        "import dial_services.cli as cli\n"
        "cli.build_parser()\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnxruntime'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_dial_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "dial_services.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    for command in ("train", "eval", "eval-al", "vectorize", "serve", "up"):
        assert command in out.stdout
