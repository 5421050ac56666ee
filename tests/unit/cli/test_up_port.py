"""`loopml up`'s port probe: free right after a stop, busy while something listens."""

from __future__ import annotations

import socket

import pytest

from loopml.cli.server import _check_port_free
from loopml.core.errors import ConfigurationError


def _time_wait_port() -> int:
    """A port whose last connection the server closed first: it sits in TIME_WAIT, as
    after a `loopml up` that served a request and was stopped."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    listener.close()
    accepted.close()  # the server side closes first: its end goes to TIME_WAIT
    client.recv(1)
    client.close()
    return port


def test_a_port_in_time_wait_is_free_for_a_new_server() -> None:
    port = _time_wait_port()
    _check_port_free("127.0.0.1", port)
    # ... and uvicorn, which sets SO_REUSEADDR, can really listen there.
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    server.close()


def test_a_port_with_a_listener_is_refused() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = int(listener.getsockname()[1])
        with pytest.raises(ConfigurationError, match="Is loopml already running"):
            _check_port_free("127.0.0.1", port)
