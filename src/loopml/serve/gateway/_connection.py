"""The gateway process's connections: requests parsed by httptools as they come, read
whole (within the body limit) and answered in order, and the bytes of an answer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import cast

import httptools
import orjson

from loopml.core.errors import (
    BadRequestError,
    LoopmlError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    error_headers,
)
from loopml.serve.gateway._tunnel import Front, Tunnel
from loopml.serve.gateway.metrics import ANONYMOUS
from loopml.serve.oip import error_body_for

log = logging.getLogger("loopml.serve.gateway")

_MAX_PIPELINED = 16


class Request:
    """One request, read whole."""

    __slots__ = (
        "body",
        "caller",
        "client",
        "headers",
        "keep_alive",
        "method",
        "path",
        "query",
        "started",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        keep_alive: bool,
        client: str,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.client = client
        self.started = time.perf_counter()
        self.caller = ANONYMOUS

    def bearer(self) -> str | None:
        """The bearer token the request carries, if any."""
        value = self.header(b"authorization")
        if value is None:
            return None
        scheme, _, token = value.decode("latin-1").partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def encode_answer(
    status: int, headers: dict[str, str], body: bytes, keep_alive: bool, head_only: bool = False
) -> bytes:
    """A whole HTTP/1.1 answer (``head_only``: a ``HEAD``'s, the body's length without it)."""
    lines = [b"HTTP/1.1 ", _STATUS_LINES.get(status) or _status_line(status)]
    for name, value in headers.items():
        lines += [name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n"]
    if "content-type" not in headers:
        lines.append(b"content-type: application/json\r\n")
    lines += [b"content-length: ", str(len(body)).encode("ascii"), b"\r\n"]
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    if not head_only:
        lines.append(body)
    return b"".join(lines)


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"{status} {phrase}\r\n".encode("latin-1")


_STATUS_LINES = {s.value: _status_line(s.value) for s in HTTPStatus}


def error_answer(path: str, error: LoopmlError, keep_alive: bool) -> bytes:
    """An error answer as the platform gives it (the V2 body on a V2 path)."""
    headers = error_headers(error.code, error.message)
    if isinstance(error, ServiceUnavailableError):
        headers["retry-after"] = "1"
    body = orjson.dumps(error_body_for(path, error))
    return encode_answer(error.status, headers, body, keep_alive)


class Connection(asyncio.Protocol):
    """One client connection: requests are parsed as they come and answered in order.

    Args:
        handle: the whole answer to a request.
        max_body: the body limit now (it comes with the route table).
        front: where the requests this gateway does not serve go, when it stands in front
            of the platform (``gateway.front``): from the first such request on, the
            connection's requests pass through a ``Tunnel``.
    """

    def __init__(
        self,
        handle: Callable[[Request], Awaitable[bytes]],
        max_body: Callable[[], int],
        front: Front | None = None,
    ) -> None:
        self.handle = handle
        self.max_body = max_body
        self.front = front
        self.tunnel: Tunnel | None = None
        self._passing = False  # the request being read goes through the tunnel
        self._raw = False  # upgraded: the client's bytes go through untouched
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.closed = False
        self.busy = False
        self.pending: deque[Request] = deque()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._refused = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else ""

    def data_received(self, data: bytes) -> None:
        if self._raw and self.tunnel is not None:
            self.tunnel.raw(data)
            return
        if self._refused:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self.tunnel is None:
                self._refuse(BadRequestError("this port does not upgrade connections"), "/")
                return
            self._raw = True  # the platform took the upgrade: what follows is not HTTP
            self.tunnel.raw(data[exc.args[0] :])
        except httptools.HttpParserError as exc:
            self._refuse(BadRequestError(f"the request does not parse as HTTP/1.1: {exc}"), "/")

    def eof_received(self) -> bool | None:
        if self.tunnel is None:
            return None
        self.tunnel.client_eof()
        return True  # the platform's answers may still come: the tunnel closes when it is done

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.tunnel is not None:
            self.tunnel.client_closed()

    def pause_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.client_full()

    def resume_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.client_drained()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        front = self.front
        if front is not None and (self.tunnel is not None or front.passes(self._path())):
            self._pass_on()
            return
        limit = self.max_body()
        expect = False
        for name, value in self._headers:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                self._too_large(limit)
                return
            if name == b"expect" and value.lower() == b"100-continue":
                expect = True
        if expect and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._passing and self.tunnel is not None:
            self.tunnel.body(body)
            return
        self._size += len(body)
        limit = self.max_body()
        if self._size > limit:
            self._too_large(limit)
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._passing and self.tunnel is not None:
            self._passing = False
            self.tunnel.end()
            return
        if self._refused:
            return
        path, _, query = self._url.decode("latin-1").partition("?")
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(
            self.parser.get_method().decode("ascii", "replace"),
            path,
            query,
            self._headers,
            body,
            self.parser.should_keep_alive(),
            self.client,
        )
        if self.busy:
            self.pending.append(request)
            if len(self.pending) >= _MAX_PIPELINED and self.transport is not None:
                self.transport.pause_reading()
            return
        self.busy = True
        asyncio.get_running_loop().create_task(self._answer(request))

    # answers

    async def _answer(self, request: Request) -> None:
        while True:
            try:
                data = await self.handle(request)
            except Exception:
                log.exception("a request to %s failed in the gateway", request.path[:200])
                error = LoopmlError("the gateway failed on this request; see its log")
                data = error_answer(request.path, error, False)
                request.keep_alive = False
            transport = self.transport
            if self.closed or transport is None:
                return
            transport.write(data)
            if not request.keep_alive:
                transport.close()
                return
            if not self.pending:
                self.busy = False
                if self.tunnel is not None:
                    self.tunnel.open_gate()
                elif transport.is_reading() is False:
                    transport.resume_reading()
                return
            request = self.pending.popleft()

    # the platform's requests (gateway.front)

    def _path(self) -> str:
        return self._url.decode("latin-1").partition("?")[0]

    def _pass_on(self) -> None:
        """Send the request being read, and every later one, to the platform."""
        self._passing = True
        tunnel = self.tunnel
        if tunnel is None:
            assert self.front is not None
            assert self.transport is not None
            proxy = self.front.trusted(self.client)
            self.tunnel = tunnel = Tunnel(self.transport, self.client, self._unreachable, proxy)
            tunnel.connect(self.front.host, self.front.port)
            if not self.busy:
                tunnel.open_gate()
        parser = self.parser
        tunnel.head(parser.get_method(), self._url, parser.get_http_version(), self._headers)

    def _unreachable(self, exc: Exception) -> None:
        """The platform could not be reached for the connection's first passed request."""
        self._refused = True
        transport = self.transport
        if transport is not None and not self.closed:
            error = ServiceUnavailableError(f"the platform behind this gateway is away ({exc})")
            transport.write(error_answer(self._path(), error, False))
            transport.close()

    def _too_large(self, limit: int) -> None:
        path = self._path()
        self._refuse(
            PayloadTooLargeError(f"the request body is over the limit of {limit} bytes"), path
        )

    def _refuse(self, error: LoopmlError, path: str) -> None:
        """Answer ``error`` and close (what else the client sends is not read)."""
        self._refused = True
        if self.transport is not None and not self.closed and not self.busy:
            self.transport.write(error_answer(path, error, False))
            self.transport.close()
        elif self.transport is not None:
            self.transport.close()
