"""The way from a gateway process in front of the platform (``gateway.front``) to the
platform, for a client connection whose requests the gateway does not serve itself.

Once a connection sends a request that is not a serving path (the API, the portal, an
upload, a download), that request and every later one on the connection go to the
platform over one loopback connection of their own, as they come:

- **requests**, still parsed by the client connection's httptools parser, are written head
  first (rebuilt from the parsed parts, with ``X-Forwarded-For`` set to the client's address,
  which the platform's server trusts from loopback; a client the gateway trusts as a proxy,
  as uvicorn would with ``FORWARDED_ALLOW_IPS``, has its own ``X-Forwarded-For`` and
  ``X-Forwarded-Proto`` kept, its address appended; anyone else's are dropped), then their
  body a piece at a time as it arrives (chunked again where it came chunked). Nothing is
  held whole: a gigabyte upload crosses with a buffer of at most ``HIGH_WATER`` bytes, the
  client's reading paused while the platform catches up. After an upgrade (``101 Switching
  Protocols``) the bytes cross untouched;
- **answers** are the platform's bytes, passed back untouched and in order (the platform
  answers a connection's requests in order): a streamed answer reaches the client as the
  platform writes it. They wait only for the answers the gateway itself still owes on
  the connection (requests it took before the first one it passed on).

When the client closes, so does the platform connection. When the platform closes (its
keep-alive ran out, or it refused a request mid-upload), the client gets what it wrote, then
the end of the stream, while what the client still sends is read and dropped for up to
``LINGER_S`` (a close with unread data would reset the connection, and the client could lose
the answer, a 413 say, before reading it). When the platform refuses an upload midway (over
its limit) it answers and closes with the body unread, which resets the connection: a write
of ours that meets the reset ends the event loop's transport without reading the answer that
came before it, so what the platform sent is then read from a duplicate of the socket's
descriptor and passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

log = logging.getLogger("loopml.serve.gateway")

HIGH_WATER = 1024 * 1024
"""Bytes a side may hold for the other before the reading of it pauses."""
LINGER_S = 2.0
"""How long a client still sending is read (and dropped) after the platform closed."""

_NOT_PASSED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})
SERVING = re.compile(r"/(?:projects/[^/]+/)?deployments/[^/]+/(?:predict|v2)(?:/.*)?|/v2(?:/.*)?")
"""The serving paths: what the gateway answers itself, or relays to the platform whole."""


def serving_path(path: str) -> bool:
    """Whether the gateway takes a request for ``path`` itself (serving it, or relaying it
    whole): the serving paths and ``/metrics``."""
    return path == "/metrics" or SERVING.fullmatch(path) is not None


LOOPBACK = "127.0.0.1,::1"
"""Whom a gateway trusts as a proxy without ``FORWARDED_ALLOW_IPS`` (uvicorn's default)."""


def trust(spec: str) -> Callable[[str], bool]:
    """Whether an address is a proxy whose forwarding headers count: ``spec`` as uvicorn's
    ``FORWARDED_ALLOW_IPS`` takes it (addresses and networks, comma-separated, ``*`` for
    any)."""
    entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
    if "*" in entries:
        return lambda _address: True
    exact = frozenset(entries)
    networks = []
    for entry in entries:
        with contextlib.suppress(ValueError):  # not an address: matched as written
            networks.append(ipaddress.ip_network(entry, strict=False))

    def trusted(address: str) -> bool:
        if address in exact:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks)

    return trusted


def _nobody(_address: str) -> bool:
    return False


@dataclass(frozen=True)
class Front:
    """Where a gateway in front of the platform passes what it does not serve, and whose
    forwarding headers it keeps (see ``trust``)."""

    host: str
    port: int
    trusted: Callable[[str], bool] = _nobody

    @staticmethod
    def passes(path: str) -> bool:
        """Whether a request for ``path`` goes to the platform through a ``Tunnel``."""
        return not serving_path(path)


class Tunnel(asyncio.Protocol):
    """The platform's side of one client connection's passage (see the module docstring).

    Args:
        client: the client connection's transport.
        client_address: the client's address, for ``X-Forwarded-For``.
        proxy: whether the client is a proxy whose forwarding headers count.
        on_failure: called with the error when the platform cannot be reached, while
            nothing of the platform's has been written to the client yet; the client
            connection answers it and closes.
    """

    def __init__(
        self,
        client: asyncio.Transport,
        client_address: str,
        on_failure: Callable[[Exception], None],
        proxy: bool = False,
    ) -> None:
        self.client = client
        self.forwarded = client_address.encode("latin-1")
        self.proxy = proxy
        self.on_failure = on_failure
        self.platform: asyncio.Transport | None = None
        self.closed = False
        self._to_platform: list[bytes] = []
        self._to_platform_size = 0
        self._to_client: list[bytes] = []
        self._to_client_size = 0
        self._gate_open = False
        self._answered = False  # the platform wrote something to the client
        self._platform_done = False
        self._chunked = False
        self._paused_client = False
        self._failure: Exception | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._spare: int | None = None  # a duplicate of the platform socket's descriptor

    def connect(self, host: str, port: int) -> None:
        """Open the platform connection (writes before it is up are held)."""
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_task(self._connect(loop, host, port))

    async def _connect(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        try:
            await loop.create_connection(lambda: self, host, port)
        except OSError as exc:
            self._failed(exc)

    # ------------------------------------------------------------------ client -> platform

    def head(
        self,
        method: bytes,
        url: bytes,
        version: str,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """A request's head, as the platform gets it."""
        lines = [method, b" ", url, b" HTTP/", version.encode("ascii"), b"\r\n"]
        chunked = False
        chain: list[bytes] = []
        proto = b"http"
        for name, value in headers:
            if name in _NOT_PASSED:
                if self.proxy and name == b"x-forwarded-for":
                    chain.append(value)
                elif self.proxy and name == b"x-forwarded-proto":
                    proto = value
                continue
            if name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            lines += [name, b": ", value, b"\r\n"]
        chain.append(self.forwarded)
        lines += [b"x-forwarded-for: ", b", ".join(chain), b"\r\n"]
        lines += [b"x-forwarded-proto: ", proto, b"\r\n\r\n"]
        self._chunked = chunked
        self._send(b"".join(lines))

    def body(self, data: bytes) -> None:
        """A piece of the request's body (httptools hands a chunked body over unchunked)."""
        if self._chunked:
            self._send(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self._send(data)

    def end(self) -> None:
        """The request's body is over."""
        if self._chunked:
            self._send(b"0\r\n\r\n")
            self._chunked = False

    def raw(self, data: bytes) -> None:
        """Bytes after an upgrade, untouched."""
        self._send(data)

    def _send(self, data: bytes) -> None:
        if self.closed or self._platform_done:  # nobody reads it any more
            return
        platform = self.platform
        if platform is not None:
            platform.write(data)
            return
        self._to_platform.append(data)
        self._to_platform_size += len(data)
        if self._to_platform_size > HIGH_WATER:
            self._pause_client()

    def client_closed(self) -> None:
        """The client went away: so does the platform connection."""
        self.closed = True
        if self.platform is not None:
            self.platform.close()

    def client_eof(self) -> None:
        """The client will send no more: tell the platform, keep passing its answers."""
        if self._platform_done:
            self.client.close()
            return
        platform = self.platform
        if platform is not None and platform.can_write_eof():
            platform.write_eof()

    # ------------------------------------------------------------------ platform -> client

    def open_gate(self) -> None:
        """The gateway's own answers on the connection are written: the platform's may go."""
        self._gate_open = True
        if self._failure is not None:
            self.on_failure(self._failure)
            return
        if self._to_client:
            data, self._to_client = b"".join(self._to_client), []
            self._to_client_size = 0
            self.client.write(data)
            if self.platform is not None and not self._platform_done:
                self.platform.resume_reading()
        if self._platform_done:
            self._finish_client()

    # asyncio.Protocol (the platform connection)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.platform = platform = cast(asyncio.Transport, transport)
        if self.closed:
            platform.close()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._spare = os.dup(sock.fileno())
        if self._to_platform:
            data, self._to_platform = b"".join(self._to_platform), []
            self._to_platform_size = 0
            platform.write(data)
        self._resume_client()

    def data_received(self, data: bytes) -> None:
        self._answered = True
        if self._gate_open:
            self.client.write(data)
        else:
            self._to_client.append(data)
            self._to_client_size += len(data)
            if self._to_client_size > HIGH_WATER and self.platform:
                self.platform.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        spare, self._spare = self._spare, None
        if spare is not None:
            if exc is not None:
                self._salvage(spare)
            os.close(spare)
        self._platform_done = True
        if self.platform is None:  # never connected: create_connection's error says why
            return
        if self._gate_open:
            self._finish_client()

    def pause_writing(self) -> None:  # the platform's side is full: stop reading the client
        self._pause_client()

    def resume_writing(self) -> None:
        self._resume_client()

    # the client connection's flow control, as its protocol hands it on

    def client_full(self) -> None:
        if self.platform is not None:
            self.platform.pause_reading()

    def client_drained(self) -> None:
        if self.platform is not None and not self._platform_done:
            self.platform.resume_reading()

    def _pause_client(self) -> None:
        if not self._paused_client:
            self._paused_client = True
            self.client.pause_reading()

    def _resume_client(self) -> None:
        if self._paused_client:
            self._paused_client = False
            self.client.resume_reading()

    def _salvage(self, fd: int) -> None:
        """Pass on what the platform sent before its connection failed (module docstring)."""
        os.set_blocking(fd, False)
        with contextlib.suppress(OSError):  # BlockingIOError: all read; a reset: all there was
            while data := os.read(fd, 65536):
                self.data_received(data)

    def _finish_client(self) -> None:
        """End the client's stream after what it was sent (see the module docstring)."""
        client = self.client
        if client.is_closing():
            return
        self._resume_client()
        if client.can_write_eof():
            client.write_eof()
            asyncio.get_running_loop().call_later(LINGER_S, client.close)
        else:
            client.close()

    def _failed(self, exc: Exception) -> None:
        self._platform_done = True
        log.warning("the platform is out of reach for a passed-on connection: %s", exc)
        if self.closed:
            return
        if self._answered:
            if self._gate_open:
                self._finish_client()
        elif self._gate_open:
            self.on_failure(exc)
        else:
            self._failure = exc
