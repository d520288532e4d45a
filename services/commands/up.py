"""``dial up``: every service on this machine, on the shipped models, for trying DIAL out.

Each service runs as its own ``dial serve`` process, so one crashing service
cannot take the others down, and they are stopped together.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dial.model import DEFAULT_REPOSITORY
from dial_services.commands.serve import SERVICES
from dial_services.common.config import flag_for


def register(sub) -> None:
    up = sub.add_parser("up", help="start every service locally on the shipped models")
    up.add_argument("--model-repo", default=DEFAULT_REPOSITORY)
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--base-port", type=int, default=50051, help="gRPC ports are base, base+1, ...")
    up.add_argument("--metrics-base-port", type=int, default=9101)
    up.add_argument("--state-dir", default=".dial", help="session store and scratch space")
    up.set_defaults(handler=run)


def serve_commands(args, state: Path) -> list[tuple[str, dict, list[str]]]:
    """Each service's name, settings and ``dial serve`` command, on consecutive ports.

    The children inherit this process's environment, malloc tuning included.
    """
    commands = []
    for i, (name, config) in enumerate(SERVICES.items()):
        settings = {"host": args.host, "port": args.base_port + i, "metrics_port": args.metrics_base_port + i,
                    "model_repo": args.model_repo, "raster_roots": os.pathsep.join([str(state), str(Path.cwd())])}
        # The Adapter writes sessions; Acquisition reads them to rank a session's image.
        if "session_store" in config.model_fields:
            settings["session_store"] = state / "sessions"
        if "job_store" in config.model_fields:
            settings["job_store"] = state / "queue-jobs"
        command = [sys.executable, "-m", "dial_services.cli", "serve", name]
        for setting, value in settings.items():
            command += [flag_for(setting), str(value)]
        commands.append((name, settings, command))
    return commands


def run(args) -> int:
    state = Path(args.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[str, subprocess.Popen]] = []
    for name, settings, command in serve_commands(args, state):
        procs.append((name, subprocess.Popen(command)))
        print(f"{name:<12} grpc://{args.host}:{settings['port']}   "
              f"metrics http://{args.host}:{settings['metrics_port']}/metrics", flush=True)
    print("DIAL is starting; Ctrl-C stops every service.", flush=True)

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        while not stopping:
            for name, proc in procs:
                if proc.poll() is not None:
                    print(f"{name} exited with status {proc.returncode}; stopping the others", file=sys.stderr)
                    code, stopping = proc.returncode or 1, True
            time.sleep(0.5)
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return code
