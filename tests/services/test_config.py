"""Service settings: one pydantic field each, set by a flag or a DIAL_* variable, checked at start-up."""
import os
import subprocess
import sys

import pytest

from dial_services.cli import build_parser
from dial_services.commands.serve import SERVICES, config_from
from dial_services.common.config import ConfigError, ServerConfig, env_for, flag_for, load_config


@pytest.fixture(autouse=True)
def no_dial_environment(monkeypatch):
    """Each test sets the DIAL_* variables it means; none leak in from the shell that runs the tests."""
    for name in list(os.environ):
        if name.upper().startswith("DIAL_"):
            monkeypatch.delenv(name)


def serve(*argv: str):
    return config_from(build_parser().parse_args(["serve", *argv]))


def test_a_flag_wins_over_the_variable_which_wins_over_the_default(monkeypatch, tmp_path):
    repo = str(tmp_path)
    default = ServerConfig.model_fields["max_workers"].default
    assert serve("segmenter", "--model-repo", repo).max_workers == default
    monkeypatch.setenv("DIAL_MAX_WORKERS", str(default + 4))
    assert serve("segmenter", "--model-repo", repo).max_workers == default + 4
    assert serve("segmenter", "--model-repo", repo, "--max-workers", str(default + 1)).max_workers == default + 1
    # A setting given by neither keeps the service's own default.
    assert serve("adapter", "--model-repo", repo).port == 50052
    assert serve("acquisition", "--model-repo", repo).port == 50053


def test_every_kind_of_setting_reads_from_its_variable(monkeypatch, tmp_path):
    roots = [tmp_path / "a", tmp_path / "b"]
    monkeypatch.setenv("DIAL_MODEL_REPO", str(tmp_path))
    monkeypatch.setenv("DIAL_RASTER_ROOTS", os.pathsep.join(map(str, roots)))
    monkeypatch.setenv("DIAL_RASTER_SCHEMES", "file, s3")
    monkeypatch.setenv("DIAL_PROVIDER", "cpu")
    monkeypatch.setenv("DIAL_LEARNING_RATE", "0.01")
    monkeypatch.setenv("DIAL_SESSION_TTL_SECONDS", "90")
    config = serve("adapter")
    assert config.model_repo == tmp_path and config.raster_roots == tuple(roots)
    assert config.raster_schemes == ("file", "s3")
    assert (config.provider, config.learning_rate, config.session_ttl_seconds) == ("cpu", 0.01, 90.0)
    # The same list as a flag.
    assert serve("adapter", "--raster-roots", str(roots[1])).raster_roots == (roots[1],)


def test_another_services_variable_does_not_stop_a_service(monkeypatch, tmp_path):
    """Kubernetes gives every service the same ConfigMap, so the Segmenter sees the job store's variable."""
    monkeypatch.setenv("DIAL_JOB_STORE", str(tmp_path / "jobs"))
    monkeypatch.setenv("DIAL_SESSION_STORE", str(tmp_path / "sessions"))
    config = serve("segmenter", "--model-repo", str(tmp_path))
    assert not hasattr(config, "job_store") and not hasattr(config, "session_store")
    assert serve("acquisition", "--model-repo", str(tmp_path)).job_store == tmp_path / "jobs"


@pytest.mark.parametrize(("argv", "environ", "named"), [
    (["segmenter", "--port", "70000"], {}, "port (--port, DIAL_PORT)"),
    (["segmenter"], {"DIAL_MAX_WORKERS": "0"}, "max_workers (--max-workers, DIAL_MAX_WORKERS)"),
    (["segmenter"], {"DIAL_PORT": "fifty"}, "port (--port, DIAL_PORT)"),
    (["adapter", "--crop-px", "100"], {}, "crop_px (--crop-px, DIAL_CROP_PX)"),
    (["segmenter"], {"DIAL_PROVIDER": "quantum"}, "provider (--provider, DIAL_PROVIDER)"),
])
def test_a_bad_value_is_refused_naming_its_flag_and_variable(monkeypatch, tmp_path, argv, environ, named):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        serve(*argv, "--model-repo", str(tmp_path))
    assert named in str(error.value)
    assert str(error.value).startswith("configuration error:")


def test_argparse_refuses_what_is_not_even_of_the_right_kind(capsys):
    for argv in (["segmenter", "--port", "fifty"], ["segmenter", "--provider", "quantum"]):
        with pytest.raises(SystemExit) as error:
            build_parser().parse_args(["serve", *argv])
        assert error.value.code == 2
    assert "--provider" in capsys.readouterr().err


def test_a_missing_model_repository_stops_dial_serve_with_the_message_and_no_traceback(tmp_path):
    missing = tmp_path / "nowhere"
    result = subprocess.run([sys.executable, "-m", "dial_services.cli", "serve", "segmenter", "--port", "0",
                             "--model-repo", str(missing)], capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items() if not k.startswith("DIAL_")}
                            | {"DIAL_NO_MALLOC_TUNING": "1"})
    assert result.returncode != 0
    assert "configuration error: model_repo (--model-repo, DIAL_MODEL_REPO)" in result.stderr
    assert str(missing) in result.stderr and "Traceback" not in result.stderr


def test_every_setting_is_a_flag_with_its_description_default_and_variable(capsys):
    for name, config in SERVICES.items():
        with pytest.raises(SystemExit) as error:
            build_parser().parse_args(["serve", name, "--help"])
        assert error.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        for field_name, field in config.model_fields.items():
            assert field.description, f"{config.__name__}.{field_name} needs a description: it is the flag's help"
            expected = f"{' '.join(field.description.split())} (default: "
            assert f"{flag_for(field_name)} " in text and expected in text, (name, field_name)
            assert f"; {env_for(field_name)})" in text, (name, field_name)


def test_load_config_passes_unset_flags_through_to_the_environment(monkeypatch):
    monkeypatch.setenv("DIAL_GRACE_SECONDS", "3")
    assert load_config(ServerConfig, {"grace_seconds": None}).grace_seconds == 3.0
    assert load_config(ServerConfig, {"grace_seconds": 7.5}).grace_seconds == 7.5

