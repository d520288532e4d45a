"""Server TLS credentials from PEM files, with optional mutual TLS.

With a client CA the server requires a client certificate signed by it;
the handshake itself refuses anyone else, before any RPC runs. Files are
re-read when they change on disk, because cert-manager and Kubernetes
rotate mounted Secrets in place and a restart should not be needed for a
renewed certificate.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import grpc

log = logging.getLogger(__name__)


class CertificateFiles:
    """The key pair (and client CA) on disk, as a dynamic gRPC certificate source."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None):
        self.cert, self.key, self.client_ca = Path(cert), Path(key), Path(client_ca) if client_ca else None
        self._lock = threading.Lock()
        self._stamp = self._mtimes()

    def _mtimes(self) -> tuple[float, ...]:
        paths = (self.cert, self.key) + ((self.client_ca,) if self.client_ca else ())
        return tuple(p.stat().st_mtime_ns for p in paths)

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        client_ca = self.client_ca.read_bytes() if self.client_ca else None
        return grpc.ssl_server_certificate_configuration(
            [(self.key.read_bytes(), self.cert.read_bytes())], root_certificates=client_ca)

    def changed_configuration(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when a file changed since the last call, else None (keep the current one)."""
        with self._lock:
            try:
                stamp = self._mtimes()
                if stamp == self._stamp:
                    return None
                configuration = self.configuration()
            except (OSError, ValueError):
                # A Secret update swaps a symlink; a read in between may fail,
                # and the current certificate stays valid until the next try.
                log.warning("TLS files are being replaced; keeping the current certificate")
                return None
            self._stamp = stamp
            log.info("TLS certificate reloaded from %s", self.cert)
            return configuration

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self.configuration(), self.changed_configuration, require_client_authentication=self.mutual)


def server_credentials(cert: Path, key: Path, client_ca: Path | None = None) -> grpc.ServerCredentials:
    """TLS credentials; with ``client_ca``, clients must present a certificate it signed."""
    return CertificateFiles(cert, key, client_ca).credentials()


def peer_common_name(context: grpc.ServicerContext) -> str | None:
    """The verified client certificate's subject CN, or None on a connection without one."""
    auth = context.auth_context() or {}
    if auth.get("transport_security_type") != [b"ssl"]:
        return None
    names = auth.get("x509_common_name") or []
    return names[0].decode("utf-8", "replace") if names else None
