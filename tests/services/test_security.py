"""TLS, mutual TLS, bearer tokens and per-caller limits, against in-process servers on loopback.

Most cases use a one-method "Whoami" service started by the real
``start_server`` (the same interceptors, credentials and health as every
DIAL service) so they need no model; the URI checks run on a real segmenter.
Certificates are made with the openssl CLI in tmp_path.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dial_services.common.auth import ANONYMOUS, TokensFileError, TokenTable, caller_identity, hash_token
from dial_services.common.config import ConfigError, ServerConfig, load_config
from dial_services.segmenter.config import SegmenterConfig
from dial_services.common.metrics import ServiceMetrics
from dial_services.common.server import start_server
from tests.support.ports import free_port

TOKEN = "s3cr3t-token-for-alice-5b1e0c"
OTHER_TOKEN = "another-token-for-bob-77d2aa"
WHOAMI = "/test.Whoami/Get"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate with CN=alice."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=dial-test-ca",
             cwd=d)
    for name, cn, usage, san in (("server", "localhost", "serverAuth", "DNS:localhost,IP:127.0.0.1"),
                                 ("client", "alice", "clientAuth", "DNS:alice")):
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return d


@pytest.fixture()
def tokens_file(tmp_path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"# caller:sha256(token)\nalice:{hash_token(TOKEN)}\nbob:{hash_token(OTHER_TOKEN)}\n")
    return path


class Whoami:
    """Answers with caller_identity(context); ``hold`` makes calls wait, to test concurrency limits."""

    def __init__(self):
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Semaphore(0)

    def get(self, request: bytes, context) -> bytes:
        self.entered.release()
        self.hold.wait(10)
        return caller_identity(context).encode()

    def register(self, server) -> tuple[str, ...]:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Whoami", {
            "Get": grpc.unary_unary_rpc_method_handler(self.get, lambda b: b, lambda b: b)}),))
        return ("test.Whoami",)


@pytest.fixture()
def serve(tmp_path):
    """serve(**config) -> (address, running, whoami); every server is stopped at the end."""
    started = []

    def start(**overrides):
        config = ServerConfig(host="127.0.0.1", port=0, **overrides)
        whoami, metrics = Whoami(), ServiceMetrics("test")
        running = start_server(config, metrics, whoami.register)
        started.append(running)
        return f"127.0.0.1:{running.port}", running, whoami

    yield start
    for running in started:
        running.stop(0)


def whoami(channel: grpc.Channel, token: str | None = None, caller: str | None = None,
           payload: bytes = b"", timeout: float = 10) -> str:
    metadata = []
    if token is not None:
        metadata.append(("authorization", f"Bearer {token}"))
    if caller is not None:
        metadata.append(("caller", caller))
    return channel.unary_unary(WHOAMI)(payload, metadata=metadata, timeout=timeout).decode()


def health_status(channel: grpc.Channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status


def tls_channel(address: str, pki: Path, client: bool) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.crt").read_bytes(),
        private_key=(pki / "client.key").read_bytes() if client else None,
        certificate_chain=(pki / "client.crt").read_bytes() if client else None)
    return grpc.secure_channel(address, credentials)


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code()


# Bearer tokens -------------------------------------------------------------------------------------------------

def test_missing_token_is_unauthenticated(serve, tokens_file):
    address, _, _ = serve(auth_tokens_file=tokens_file)
    with grpc.insecure_channel(address) as channel:
        assert code_of(lambda: whoami(channel)) == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: whoami(channel, caller="alice")) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("header", ["Bearer wrong-token", "Bearer ", "Basic YWxpY2U6cHc=", TOKEN])
def test_wrong_token_is_unauthenticated(serve, tokens_file, header):
    address, _, _ = serve(auth_tokens_file=tokens_file)
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(WHOAMI)
        assert code_of(lambda: call(b"", metadata=[("authorization", header)], timeout=10)) \
            == grpc.StatusCode.UNAUTHENTICATED


def test_good_token_yields_its_caller_and_ignores_claimed_caller(serve, tokens_file):
    address, _, _ = serve(auth_tokens_file=tokens_file)
    with grpc.insecure_channel(address) as channel:
        assert whoami(channel, TOKEN) == "alice"
        assert whoami(channel, OTHER_TOKEN, caller="alice") == "bob"


def test_health_needs_no_credentials(serve, tokens_file):
    address, _, _ = serve(auth_tokens_file=tokens_file)
    with grpc.insecure_channel(address) as channel:
        assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING


def test_without_auth_the_claimed_caller_is_the_identity(serve):
    address, _, _ = serve()
    with grpc.insecure_channel(address) as channel:
        assert whoami(channel, caller="carol") == "carol"
        assert whoami(channel) == ANONYMOUS


def test_real_client_sends_what_the_server_expects(segmenter_with_tokens):
    from dial_client import SegmenterClient
    from dial_client.errors import DialError

    address, _ = segmenter_with_tokens
    with SegmenterClient(address, token=TOKEN, caller="alice", retries=0) as client:
        assert [m.name for m in client.list_models()] == ["tiny"]
    with SegmenterClient(address, token="not-" + TOKEN, retries=0) as client, pytest.raises(DialError) as error:
        client.list_models()
    assert error.value.code == grpc.StatusCode.UNAUTHENTICATED


# Secrets stay secret --------------------------------------------------------------------------------------------

def test_tokens_never_reach_logs_or_metrics(serve, tokens_file, caplog):
    caplog.set_level(logging.DEBUG)
    address, running, _ = serve(auth_tokens_file=tokens_file)
    with grpc.insecure_channel(address) as channel:
        assert whoami(channel, TOKEN) == "alice"
        code_of(lambda: whoami(channel, TOKEN + "x"))
        code_of(lambda: whoami(channel))
    exposition = running.metrics.exposition().decode()
    assert 'code="UNAUTHENTICATED"' in exposition
    assert "dial_auth_rejections_total" in exposition
    for secret in (TOKEN, TOKEN + "x"):
        assert secret not in caplog.text
        assert secret not in exposition


def test_a_token_pasted_in_clear_is_refused_without_echoing_it(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"alice:{TOKEN}\n")
    with pytest.raises(TokensFileError) as error:
        TokenTable.from_file(path)
    assert TOKEN not in str(error.value) and "line 1" in str(error.value)


def test_json_tokens_file_sets_per_caller_limits(tmp_path, serve):
    path = tmp_path / "tokens.json"
    path.write_text('{"callers": {"alice": {"sha256": "%s", "max_request_bytes": 16}}}' % hash_token(TOKEN))
    address, _, _ = serve(auth_tokens_file=path)
    with grpc.insecure_channel(address) as channel:
        assert whoami(channel, TOKEN, payload=b"x" * 16) == "alice"
        assert code_of(lambda: whoami(channel, TOKEN, payload=b"x" * 17)) == grpc.StatusCode.RESOURCE_EXHAUSTED


# Per-caller limits ---------------------------------------------------------------------------------------------

def test_per_caller_concurrency_limit(serve, tokens_file):
    address, _, service = serve(auth_tokens_file=tokens_file, max_calls_per_caller=1)
    service.hold.clear()
    with grpc.insecure_channel(address) as channel, futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(whoami, channel, TOKEN)
        assert service.entered.acquire(timeout=10)
        assert code_of(lambda: whoami(channel, TOKEN)) == grpc.StatusCode.RESOURCE_EXHAUSTED
        service.hold.set()  # bob is not limited by alice's call
        assert whoami(channel, OTHER_TOKEN) == "bob"
        assert first.result(10) == "alice"
        assert whoami(channel, TOKEN) == "alice"  # the slot came back


def test_per_caller_request_size_limit(serve, tokens_file):
    address, _, _ = serve(auth_tokens_file=tokens_file, max_request_bytes_per_caller=1024)
    with grpc.insecure_channel(address) as channel:
        assert whoami(channel, TOKEN, payload=b"x" * 1024) == "alice"
        assert code_of(lambda: whoami(channel, TOKEN, payload=b"x" * 1025)) == grpc.StatusCode.RESOURCE_EXHAUSTED


# TLS and mutual TLS --------------------------------------------------------------------------------------------

def test_tls_serves_only_tls_and_probes_use_the_health_port(serve, pki, tokens_file):
    address, running, _ = serve(tls_cert=pki / "server.crt", tls_key=pki / "server.key",
                                auth_tokens_file=tokens_file, health_port=free_port())
    with tls_channel(address, pki, client=False) as channel:
        assert whoami(channel, TOKEN) == "alice"
    with grpc.insecure_channel(address) as channel:
        assert code_of(lambda: whoami(channel, TOKEN, timeout=3)) == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(f"127.0.0.1:{running.health_port}") as channel:
        assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING
        # The probe port carries nothing but health.
        assert code_of(lambda: whoami(channel, TOKEN)) == grpc.StatusCode.UNIMPLEMENTED
    running.set_serving(False)
    with grpc.insecure_channel(f"127.0.0.1:{running.health_port}") as channel:
        assert health_status(channel) == health_pb2.HealthCheckResponse.NOT_SERVING


def test_mtls_refuses_a_client_without_certificate(serve, pki):
    address, _, _ = serve(tls_cert=pki / "server.crt", tls_key=pki / "server.key", tls_client_ca=pki / "ca.crt")
    with tls_channel(address, pki, client=False) as channel:
        assert code_of(lambda: whoami(channel, timeout=5)) == grpc.StatusCode.UNAVAILABLE


def test_mtls_identity_is_the_certificate_cn(serve, pki, tokens_file):
    address, _, _ = serve(tls_cert=pki / "server.crt", tls_key=pki / "server.key", tls_client_ca=pki / "ca.crt",
                          auth_tokens_file=tokens_file)
    with tls_channel(address, pki, client=True) as channel:
        assert whoami(channel, caller="mallory") == "alice"
        # A token, when sent, speaks for the call and must be valid.
        assert whoami(channel, OTHER_TOKEN) == "bob"
        assert code_of(lambda: whoami(channel, "bogus")) == grpc.StatusCode.UNAUTHENTICATED
        assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING


def test_security_settings_are_checked_at_start_up(tmp_path, pki, monkeypatch):
    def settings(**environ):
        for name in ("DIAL_TLS_CERT", "DIAL_TLS_KEY", "DIAL_TLS_CLIENT_CA", "DIAL_AUTH_TOKENS_FILE"):
            monkeypatch.delenv(name, raising=False)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        return load_config(ServerConfig)

    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        settings(DIAL_TLS_CERT=str(pki / "server.crt"))
    with pytest.raises(ConfigError, match="tls_client_ca"):
        settings(DIAL_TLS_CLIENT_CA=str(pki / "ca.crt"))
    with pytest.raises(ConfigError, match="auth_tokens_file"):
        settings(DIAL_AUTH_TOKENS_FILE=str(tmp_path / "missing"))
    config = settings(DIAL_TLS_CERT=str(pki / "server.crt"), DIAL_TLS_KEY=str(pki / "server.key"),
                      DIAL_TLS_CLIENT_CA=str(pki / "ca.crt"))
    assert config.auth_enabled


# Raster URIs through an authenticated segmenter -----------------------------------------------------------------

@pytest.fixture()
def segmenter_with_tokens(tiny_repo, raster_root, tokens_file):
    from dial_services.segmenter.main import start

    config = SegmenterConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, raster_roots=(raster_root,),
                             max_queue_delay_ms=1.0, auth_tokens_file=tokens_file)
    running = start(config)
    yield f"127.0.0.1:{running.port}", running
    running.stop(0)


@pytest.mark.parametrize("uri", [
    "{root}/../../etc/passwd",
    "{root}/../outside.tif",
    "file://{root}/../../etc/passwd",
    "http://example.com/a.tif",
    "s3://bucket/a.tif",
    "/vsicurl/http://example.com/a.tif",
    "/etc/passwd",
])
def test_raster_uris_outside_the_roots_are_permission_denied(segmenter_with_tokens, raster_root, uri):
    from dial_client import SegmenterClient
    from dial_client.errors import PermissionDenied

    address, _ = segmenter_with_tokens
    with SegmenterClient(address, token=TOKEN, retries=0) as client, pytest.raises(PermissionDenied):
        client.predict_raster(uri.format(root=raster_root), model="tiny", timeout=30)


def test_a_full_server_refuses_quickly_and_recovers(serve):
    """max_concurrent_rpcs is the server-wide back-pressure: RESOURCE_EXHAUSTED at once, not a queue."""
    import time

    address, _, service = serve(max_concurrent_rpcs=1)
    service.hold.clear()
    with grpc.insecure_channel(address) as channel, futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(whoami, channel, caller="alice")
        assert service.entered.acquire(timeout=10)
        started = time.perf_counter()
        assert code_of(lambda: whoami(channel, caller="bob")) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.perf_counter() - started < 2
        service.hold.set()
        assert first.result(10) == "alice"
        assert whoami(channel, caller="bob") == "bob"


def test_tokens_rotate_without_a_restart(serve, tokens_file, caplog):
    import os

    from dial_services.common.auth import TokensFile

    clock = [0.0]
    tokens = TokensFile(tokens_file, check_every_s=5, clock=lambda: clock[0])
    assert tokens.current().caller_for(TOKEN) == "alice"
    tokens_file.write_text(f"carol:{hash_token('fresh-token')}\n")
    os.utime(tokens_file, ns=(1, 1))
    assert tokens.current().caller_for(TOKEN) == "alice", "checked at most every check_every_s"
    clock[0] = 6
    assert tokens.current().caller_for("fresh-token") == "carol"
    assert tokens.current().caller_for(TOKEN) is None
    tokens_file.write_text("carol:not-a-digest-but-a-secret\n")
    os.utime(tokens_file, ns=(2, 2))
    clock[0] = 12
    assert tokens.current().caller_for("fresh-token") == "carol", "a broken file keeps the previous tokens"
    assert "not-a-digest-but-a-secret" not in caplog.text


def test_a_bad_tokens_file_stops_start_up_with_a_config_error(serve, tmp_path):
    path = tmp_path / "tokens"
    path.write_text("alice\n")
    with pytest.raises(ConfigError, match="DIAL_AUTH_TOKENS_FILE"):
        serve(auth_tokens_file=path)


def test_the_hash_helper_prints_a_tokens_file_line(monkeypatch, capsys, tmp_path):
    import io

    from dial_services.common.auth import main

    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))
    assert main(["alice"]) == 0
    line = capsys.readouterr().out
    path = tmp_path / "tokens"
    path.write_text(line)
    assert TokenTable.from_file(path).caller_for(TOKEN) == "alice"
    assert TOKEN not in line
