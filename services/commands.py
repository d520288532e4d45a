"""``dial serve <service>`` and ``dial up``.

Each service package has a ``main`` module exposing ``CONFIG`` (its typed
config class), ``DEFAULT_PORTS``, ``add_arguments(parser)`` and
``run(config)``. ``dial up`` starts every service as its own process, so one
crashing service cannot take the others down, and stops them together.
"""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dial_services.common.config import load_config

SERVICES = ("segmenter", "adapter", "acquisition")


def available_services() -> dict[str, object]:
    found = {}
    for name in SERVICES:
        try:
            found[name] = importlib.import_module(f"dial_services.{name}.main")
        except ModuleNotFoundError as error:
            if error.name and error.name.startswith(f"dial_services.{name}"):
                continue
            raise
    return found


def _common_arguments(parser) -> None:
    parser.add_argument("--host", help="address to bind (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="gRPC port")
    parser.add_argument("--metrics-port", dest="metrics_port", type=int, help="Prometheus port (0 disables)")
    parser.add_argument("--raster-roots", dest="raster_roots",
                        help=f"folders rasters may be read from and written to, separated by '{os.pathsep}'")
    parser.add_argument("--max-workers", dest="max_workers", type=int)
    parser.add_argument("--max-message-bytes", dest="max_message_bytes", type=int)
    parser.add_argument("--grace-seconds", dest="grace_seconds", type=float)
    parser.add_argument("--tls-cert", dest="tls_cert", help="PEM certificate: serve TLS")
    parser.add_argument("--tls-key", dest="tls_key", help="PEM private key for --tls-cert")
    parser.add_argument("--tls-client-ca", dest="tls_client_ca", help="PEM CA: require client certificates (mTLS)")
    parser.add_argument("--auth-tokens-file", dest="auth_tokens_file",
                        help="'caller:sha256(token)' lines: require bearer tokens")
    parser.add_argument("--health-port", dest="health_port", type=int,
                        help="plaintext port serving only grpc.health.v1 (for probes when TLS is on)")
    parser.add_argument("--max-calls-per-caller", dest="max_calls_per_caller", type=int)


def add_commands(sub) -> None:
    services = available_services()
    serve = sub.add_parser("serve", help="run one service")
    serve_sub = serve.add_subparsers(dest="service", required=True)
    for name, module in services.items():
        p = serve_sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        _common_arguments(p)
        module.add_arguments(p)
        p.set_defaults(handler=_run_serve, module=module)

    up = sub.add_parser("up", help="start every service locally on the shipped models")
    up.add_argument("--model-repo", default="models")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--base-port", type=int, default=50051, help="gRPC ports are base, base+1, ...")
    up.add_argument("--metrics-base-port", type=int, default=9101)
    up.add_argument("--state-dir", default=".dial", help="session store and scratch space")
    up.set_defaults(handler=_run_up)


def _run_serve(args) -> int:
    module = args.module
    flags = {k: v for k, v in vars(args).items() if k not in ("handler", "module", "service", "command", "verbose")}
    config = load_config(module.CONFIG, flags)
    module.run(config)
    return 0


def _run_up(args) -> int:
    services = available_services()
    state = Path(args.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[str, str, subprocess.Popen]] = []
    for i, name in enumerate(services):
        port, metrics = args.base_port + i, args.metrics_base_port + i
        cmd = [sys.executable, "-m", "dial_services.cli", "serve", name, "--host", args.host,
               "--port", str(port), "--metrics-port", str(metrics), "--model-repo", args.model_repo,
               "--raster-roots", os.pathsep.join([str(state), str(Path.cwd())])]
        if name in ("adapter", "acquisition"):
            # The Adapter writes sessions; Acquisition reads them to rank a session's image.
            cmd += ["--session-store", str(state / "sessions")]
        if name == "acquisition":
            cmd += ["--job-store", str(state / "queue-jobs")]
        procs.append((name, f"{args.host}:{port}", subprocess.Popen(cmd)))
        print(f"{name:<12} grpc://{args.host}:{port}   metrics http://{args.host}:{metrics}/metrics", flush=True)
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
            for name, _, proc in procs:
                if proc.poll() is not None:
                    print(f"{name} exited with status {proc.returncode}; stopping the others", file=sys.stderr)
                    code, stopping = proc.returncode or 1, True
            time.sleep(0.5)
    finally:
        for _, _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, _, proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return code
