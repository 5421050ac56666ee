"""The SDK's TLS: servers are verified (certifi's bundle, or SSL_CERT_FILE), and the trust
store is read on the first TLS connection, not when a client is made."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from loopml.client import Client
from loopml.client._tls import tls_context
from loopml.core.errors import ServiceUnavailableError
from tests.tls import self_signed


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate; yields its URL and the
    certificate's file."""
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_trust_store_is_read_on_the_first_handshake_not_before(
    https_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, cert = https_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = tls_context()
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED

    with Client(url) as client:
        used = client._http.client._transport._pool._ssl_context  # type: ignore[attr-defined]
        assert used.cert_store_stats()["x509_ca"] == 0
        assert client.health()["status"] == "ok"
        assert used.cert_store_stats()["x509_ca"] == 1  # SSL_CERT_FILE's one certificate


def test_a_server_outside_the_trust_store_is_refused(
    https_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = https_server
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)

    with Client(url) as client, pytest.raises(ServiceUnavailableError) as caught:
        client.health()

    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message


def test_the_context_has_the_standard_librarys_default_client_settings() -> None:
    ours, standard = tls_context(), ssl.create_default_context()
    for setting in ("protocol", "verify_mode", "check_hostname", "verify_flags", "options"):
        assert getattr(ours, setting) == getattr(standard, setting), setting
    assert (ours.minimum_version, ours.maximum_version) == (
        standard.minimum_version,
        standard.maximum_version,
    )
