"""The committed protobuf/gRPC modules are what `python protos/generate.py` produces now."""
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_protos():
    check = subprocess.run(
        [sys.executable, str(REPO_ROOT / "protos" / "generate.py"), "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


def test_check_reports_changed_missing_and_extra_files(tmp_path):
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("generate_protos", REPO_ROOT / "protos" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)

    fresh, committed = tmp_path / "fresh", tmp_path / "committed"
    generate.generate(fresh)
    shutil.copytree(fresh, committed)
    assert generate.stale_files(fresh, committed) == []

    (committed / "dial" / "v1" / "common_pb2.py").write_text("# edited by hand\n")
    (committed / "dial" / "v1" / "segmenter_pb2.pyi").unlink()
    (committed / "dial" / "v1" / "removed_pb2.py").write_text("")
    assert generate.stale_files(fresh, committed) == [
        "missing: dial/v1/segmenter_pb2.pyi",
        "not generated: dial/v1/removed_pb2.py",
        "differs: dial/v1/common_pb2.py",
    ]
