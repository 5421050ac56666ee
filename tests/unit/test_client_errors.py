"""What the SDK and the CLI say when a server is down, and when it is up but slow to answer:
a slow answer must not read as a dead server (it did: "cannot reach loopml ...: timed out.
Is the server running?" for a 52 s evaluation past the client's 30 s)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.client import Client
from loopml.core.errors import NotFoundError, ReplyTimeoutError, ServiceUnavailableError
from tests.conftest import free_port, serving


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A real TCP server that takes every connection and its request, and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:  # closed at teardown
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() does not
    listener.close()
    for conn in held:
        conn.close()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the silent server's accept loop did not end"


@pytest.fixture
def slow_server() -> Iterator[str]:
    """A real HTTP server that answers every request after 1.5 s, with a loopml 404."""

    class Slow(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            time.sleep(1.5)  # the answer is late; nothing is polled
            body = json.dumps({"error": {"code": "not_found", "message": "no such model"}})
            # A client that gave up has hung up: its answer has nowhere to go.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)) as url:
        yield url


def test_scoring_calls_wait_for_their_answer_past_the_clients_timeout(slow_server: str) -> None:
    # Evaluating (and gating, which may score the champion) is the server's work before it
    # answers: a text model's took 52 s, past the client's 30 s.
    client = Client(slow_server, timeout=0.5)
    with pytest.raises(ReplyTimeoutError):
        client.models.get("churn")  # an ordinary call keeps the client's timeout
    with pytest.raises(NotFoundError, match="no such model"):
        client.models.evaluate("churn", 1)
    with pytest.raises(NotFoundError, match="no such model"):
        client.models.gate("churn", 1)


def test_a_slow_answer_is_a_reply_timeout_that_says_the_server_is_up(silent_server: str) -> None:
    client = Client(silent_server, timeout=0.5)
    with pytest.raises(ReplyTimeoutError) as raised:
        client.projects.list()
    message = str(raised.value)
    assert "did not answer GET /api/v1/projects within 0.5 s" in message, message
    assert "the server is up" in message
    assert "LOOPML_CLIENT_TIMEOUT_S" in message
    assert "Is the server running" not in message
    assert raised.value.details["url"] == silent_server
    # Code that caught the old error still catches this one.
    assert isinstance(raised.value, ServiceUnavailableError)


def test_a_closed_port_is_still_an_unreachable_server() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailableError) as raised:
        Client(url, timeout=5).projects.list()
    assert not isinstance(raised.value, ReplyTimeoutError)
    assert f"cannot reach loopml at {url}" in str(raised.value)
    assert "Is the server running?" in str(raised.value)


def test_the_cli_says_a_slow_answer_is_slow_and_how_to_wait_longer(silent_server: str) -> None:
    env = {
        **os.environ,
        "LOOPML_CLIENT_URL": silent_server,
        "LOOPML_CLIENT_TIMEOUT_S": "0.5",
        "COLUMNS": "200",
    }
    loopml = str(Path(sys.executable).with_name("loopml"))
    done = subprocess.run(
        [loopml, "projects", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    said = done.stderr
    assert said.startswith("error: loopml at "), said
    assert "did not answer GET /api/v1/projects within 0.5 s" in said, said
    assert "LOOPML_CLIENT_TIMEOUT_S" in said
    assert "Is the server running" not in said
