"""The ``dial`` command line: one parser, the core's commands beside the serving ones, and its malloc tuning."""
import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dial import commands as core_commands
from dial_services.cli import build_parser
from dial_services.commands.serve import SERVICES, config_from
from dial_services.commands.up import serve_commands
from dial_services.malloc_tuning import MALLOC_TUNABLES, ensure_malloc_tuning

REPO = Path(__file__).resolve().parents[2]

# Every flag `dial serve` had before its flags were made from the config fields: scripts and manifests use them.
LEGACY_SERVE_FLAGS = {
    "common": ["--host", "--port", "--metrics-port", "--raster-roots", "--max-workers", "--max-message-bytes",
               "--grace-seconds", "--tls-cert", "--tls-key", "--tls-client-ca", "--auth-tokens-file",
               "--health-port", "--max-calls-per-caller"],
    "segmenter": ["--model-repo", "--model-cache", "--provider", "--max-batch-size", "--max-queue-delay-ms",
                  "--max-queue-size", "--intra-op-threads"],
    "adapter": ["--model-repo", "--model-cache", "--session-store", "--session-ttl-seconds",
                "--max-sessions-in-memory", "--max-sessions-per-caller", "--adaptation-variant",
                "--adaptation-steps", "--learning-rate", "--recall-weight", "--crop-px", "--max-crops",
                "--intra-op-threads"],
    "acquisition": ["--model-repo", "--model-cache", "--session-store", "--session-ttl-seconds", "--queue-workers",
                    "--job-store", "--job-ttl-seconds", "--intra-op-threads"],
}


def help_of(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as error:
        build_parser().parse_args([*argv, "--help"])
    assert error.value.code == 0
    return capsys.readouterr().out


def test_dial_help_lists_the_core_and_the_serving_commands(capsys):
    text = help_of(capsys)
    names = [name.replace("_", "-") for name in core_commands.COMMANDS] + ["serve", "up"]
    listed = re.search(r"\{([a-z,-]+)\}", text).group(1).split(",")
    assert listed == names


@pytest.mark.parametrize("argv", [[name.replace("_", "-")] for name in core_commands.COMMANDS]
                         + [["serve"], ["up"]] + [["serve", name] for name in SERVICES])
def test_every_command_has_its_help(capsys, argv):
    assert help_of(capsys, *argv).startswith(f"usage: dial {' '.join(argv)}")


@pytest.mark.parametrize("service", list(SERVICES))
def test_serve_keeps_every_flag_name_it_had(capsys, service):
    text = help_of(capsys, "serve", service)
    missing = [flag for flag in LEGACY_SERVE_FLAGS["common"] + LEGACY_SERVE_FLAGS[service]
               if not re.search(rf"\s{re.escape(flag)}[\s,]", text)]
    assert not missing


def test_a_core_command_parses_its_flags_in_the_one_parser():
    args = build_parser().parse_args(["vectorize", "map.tif", "out.gpkg", "--simplify", "2.5", "--classes", "a,b"])
    assert (args.class_map, args.output, args.simplify, args.classes) == ("map.tif", "out.gpkg", 2.5, "a,b")
    assert args.handler.__module__ == "dial.commands.vectorize"


def test_dial_up_starts_each_service_with_flags_its_config_accepts(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("DIAL_"):
            monkeypatch.delenv(name)
    args = argparse.Namespace(host="127.0.0.1", base_port=56000, metrics_base_port=57000, model_repo=str(tmp_path))
    state = tmp_path / "state"
    commands = serve_commands(args, state)
    assert [name for name, _, _ in commands] == list(SERVICES)
    configs = {}
    for i, (name, settings, command) in enumerate(commands):
        assert command[:5] == [sys.executable, "-m", "dial_services.cli", "serve", name]
        configs[name] = config = config_from(build_parser().parse_args(command[3:]))
        assert (config.port, config.metrics_port) == (56000 + i, 57000 + i) == (settings["port"],
                                                                              settings["metrics_port"])
        assert config.raster_roots == (state, Path.cwd())
    assert configs["adapter"].session_store == configs["acquisition"].session_store == state / "sessions"
    assert configs["acquisition"].job_store == state / "queue-jobs"


def tunables_in_the_file() -> str:
    (value,) = re.findall(r"^GLIBC_TUNABLES=(\S+)$", (REPO / "services" / "malloc.env").read_text(), re.M)
    return value


def test_dial_restarts_itself_once_under_the_tunables_of_malloc_env(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    monkeypatch.setattr(sys, "argv", ["dial", "serve", "segmenter", "--port", "0"])
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("DIAL_NO_MALLOC_TUNING", raising=False)
    ensure_malloc_tuning("dial_services.cli")
    (path, argv, env), = calls
    assert path == sys.executable
    assert argv == [sys.executable, "-m", "dial_services.cli", "serve", "segmenter", "--port", "0"]
    assert env["GLIBC_TUNABLES"] == MALLOC_TUNABLES == tunables_in_the_file()
    assert "glibc.malloc.mmap_max=0" in MALLOC_TUNABLES

    # Started again with them, or by an operator who chose their own, or told not to: no restart.
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")
    ensure_malloc_tuning("dial_services.cli")
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("DIAL_NO_MALLOC_TUNING", "1")
    ensure_malloc_tuning("dial_services.cli")
    assert len(calls) == 1


def test_make_runs_tests_and_benchmarks_under_the_same_tunables():
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    shown = subprocess.run(["make", "-s", "--no-print-directory", "--eval",
                            'show-tunables: ; @printf "%s" "$$GLIBC_TUNABLES"', "show-tunables"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert shown.stdout == tunables_in_the_file()


def test_the_tunables_are_written_in_one_place_only():
    """The Makefile and the dial command read services/malloc.env; the image and manifests run dial."""
    places = [REPO / "Makefile", REPO / "Dockerfile", *sorted((REPO / "deploy").rglob("*.yaml")),
              *sorted((REPO / "services").rglob("*.py")), *sorted((REPO / "dial").rglob("*.py")),
              *sorted((REPO / "benchmarks").rglob("*.py"))]
    spelled = [str(p.relative_to(REPO)) for p in places if "malloc.mmap_max" in p.read_text()]
    assert not spelled
