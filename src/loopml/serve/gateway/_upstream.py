"""The gateway's client for calls to replicas: kept-alive HTTP/1.1 connections, each an
asyncio protocol that parses answers with httptools (the parser uvicorn uses).

The upstream call is the gateway's hot path, and a general client is a heavy one there: a
py-spy profile under load put about 65 % of the gateway's CPU in httpx's async client, and
after the move to aiohttp still about 200 µs of CPU per call in its session machinery
(request and response objects, tracing hooks, timers, a payload writer task). A replica is
a known peer answering small JSON over HTTP/1.1 on loopback, so a call here is: take an idle
connection of that replica (or open one), write the request in one piece, let the parser
fill in status, the headers passed on and the body, and put the connection back.

Failures are sorted into the two cases the gateway treats differently:

- ``Unreachable``: nothing was answered (connect refused or timed out, the replica closed
  the connection, it broke mid-answer, the answer did not parse). Inference has no side
  effect, so the gateway may send the request to another replica. A connection reused from
  the pool that fails before any byte of an answer is first retried once on a new
  connection to the same replica: the replica may have just closed it as idle.
- ``UpstreamTimeout``: the replica took the request but did not answer in time (504).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import cast
from urllib.parse import urlsplit

import httptools

# Headers an answer passes on to the client; the rest are the replica's own business.
PASSED_ON = frozenset(
    {
        "content-type",
        "x-inference-id",
        "retry-after",
        "x-loopml-error-code",
        "x-loopml-error-message",
    }
)
_PASSED_ON_BYTES = frozenset(name.encode() for name in PASSED_ON)
# Under uvicorn's 5 s keep-alive: an idle connection is dropped before the replica closes
# it, so a request rarely races a closing socket.
KEEPALIVE_S = 4.0
_LARGE_BODY = 64 * 1024
# Request heads' first lines by (method, url): a replica's few paths, parsed once.
_MAX_PREFIXES = 4096


class Unreachable(Exception):
    """The replica answered nothing: the request may go to another one."""


class UpstreamTimeout(Exception):
    """The replica did not answer within the timeout."""


class UpstreamAnswer:
    """A replica's answer: status, the headers passed on (lower-case names), and the body."""

    __slots__ = ("content", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self.status = status
        self.headers = headers
        self.content = content


class _Connection(asyncio.Protocol):
    """One kept-alive connection to a replica; one call at a time."""

    def __init__(self, passed: frozenset[bytes] = _PASSED_ON_BYTES) -> None:
        self._passed = passed
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[UpstreamAnswer] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._started = False  # a byte of the answer arrived
        self._complete = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass, but behaves as one).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Unreachable(f"the replica's answer does not parse: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(Unreachable(f"the replica closed the connection{f': {exc}' if exc else ''}"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower in self._passed:
            self._headers[lower.decode("latin-1")] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._complete = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        content = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        status = self._parser.get_status_code()
        if not self._parser.should_keep_alive():
            self.close()
        waiter.set_result(UpstreamAnswer(status, self._headers, content))

    # calls

    @property
    def started(self) -> bool:
        """Whether any byte of the current call's answer arrived."""
        return self._started

    async def call(self, head: bytes, body: bytes, deadline: float) -> UpstreamAnswer:
        """Send one request and wait for its whole answer until ``deadline`` (the loop's
        clock; then ``TimeoutError``)."""
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            raise Unreachable("the connection is closed")
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        # One timer on the loop, cancelled with the answer: cheaper per call than an
        # ``asyncio.timeout`` context (which reschedules and cancels the whole task).
        timer = loop.call_at(deadline, self._fail, TimeoutError())
        self._headers = {}
        self._body = []
        self._started = False
        self._complete = False
        if len(body) <= _LARGE_BODY:
            transport.write(head + body)
        else:
            transport.write(head)
            transport.write(body)
        try:
            return await self._waiter
        finally:
            timer.cancel()
            self._waiter = None

    @property
    def reusable(self) -> bool:
        return self._complete and not self.closed and self.transport is not None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class UpstreamClient:
    """Calls replicas over pools of keep-alive connections (see the module docstring).

    Args:
        connect_timeout_s: connecting to a replica (then ``Unreachable``).
        timeout_s: the longest a call may take, connecting included (then ``UpstreamTimeout``).
        max_connections: the most connections open at once, over all replicas; a call over
            the bound waits for one to be free.
        passed: the answer headers kept (lower-case names; ``PASSED_ON`` by default).
        own_host: write the ``Host`` header of the URL called; ``False`` for a relay, whose
            caller sends the client's own in ``headers``.
    """

    def __init__(
        self,
        *,
        connect_timeout_s: float,
        timeout_s: float,
        max_connections: int,
        passed: frozenset[str] = PASSED_ON,
        own_host: bool = True,
    ):
        self._own_host = own_host
        self._passed = frozenset(name.encode("latin-1") for name in passed)
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._open = 0
        self._prefixes: dict[tuple[str, str], tuple[str, int, bytes]] = {}

    async def start(self) -> None:
        """Get ready to call (on the running event loop)."""
        self._slots = asyncio.Semaphore(self._max_connections)

    async def close(self) -> None:
        """Close the idle connections; calls in flight fail."""
        for pool in self._idle.values():
            while pool:
                pool.popleft().close()
        self._idle.clear()
        self._slots = None

    async def send(
        self, method: str, url: str, body: bytes, headers: dict[str, str]
    ) -> UpstreamAnswer:
        """One call; ``url`` is already encoded (the client's query string as it came).

        Raises:
            Unreachable: nothing was answered.
            UpstreamTimeout: no complete answer within the timeout.
        """
        slots = self._slots
        assert slots is not None, "the gateway is not started"
        known = self._prefixes.get((method, url))
        if known is None:
            known = self._prefix(method, url)
        host, port, prefix = known
        head = _head(prefix, headers, len(body))
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        try:
            if slots.locked():  # wait for a free connection, within the call's time
                async with asyncio.timeout_at(deadline):
                    await slots.acquire()
            else:
                await slots.acquire()  # free: no wait, no timer
            try:
                return await self._call((host, port), head, body, deadline)
            finally:
                slots.release()
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"no answer from {host}:{port} within {self._timeout_s:g} s"
            ) from exc

    async def _call(
        self, key: tuple[str, int], head: bytes, body: bytes, deadline: float
    ) -> UpstreamAnswer:
        connection = self._pooled(key)
        if connection is not None:
            try:
                return await self._use(key, connection, head, body, deadline)
            except Unreachable:
                if connection.started:
                    raise
                # Closed by the replica while idle, most likely: once more, on a new one.
        connection = await self._connect(key, deadline)
        return await self._use(key, connection, head, body, deadline)

    async def _use(
        self,
        key: tuple[str, int],
        connection: _Connection,
        head: bytes,
        body: bytes,
        deadline: float,
    ) -> UpstreamAnswer:
        try:
            answer = await connection.call(head, body, deadline)
        except BaseException:
            connection.close()  # mid-call (a timeout, a cancel): never reused
            raise
        if connection.reusable:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(key, deque()).append(connection)
        return answer

    def _pooled(self, key: tuple[str, int]) -> _Connection | None:
        pool = self._idle.get(key)
        now = time.monotonic()
        while pool:
            connection = pool.pop()  # the most recently used: the least likely to be closed
            if connection.reusable and now - connection.idle_since < KEEPALIVE_S:
                self._drop_stale(pool, now)
                return connection
            connection.close()
        return None

    @staticmethod
    def _drop_stale(pool: deque[_Connection], now: float) -> None:
        while pool and now - pool[0].idle_since >= KEEPALIVE_S:
            pool.popleft().close()

    async def _connect(self, key: tuple[str, int], deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        connect_by = loop.time() + self._connect_timeout_s
        try:
            async with asyncio.timeout_at(min(connect_by, deadline)):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self._passed), *key
                )
        except TimeoutError as exc:
            if deadline < connect_by:
                raise  # the call's own time ran out: a timeout, not an unreachable replica
            raise Unreachable(f"connecting to {key[0]}:{key[1]} timed out") from exc
        except OSError as exc:
            raise Unreachable(f"cannot connect to {key[0]}:{key[1]}: {exc}") from exc
        return connection

    def _prefix(self, method: str, url: str) -> tuple[str, int, bytes]:
        """Host, port and the head's first bytes (request line, host) for a call to ``url``."""
        host, port, target = self._address(url)
        own = b"host: " + f"{host}:{port}".encode("latin-1") + b"\r\n" if self._own_host else b""
        prefix = b"".join(
            [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n", own, b"content-length: "]
        )
        if len(self._prefixes) >= _MAX_PREFIXES:  # query strings vary: never grow unbounded
            self._prefixes.clear()
        self._prefixes[(method, url)] = known = (host, port, prefix)
        return known

    @staticmethod
    def _address(url: str) -> tuple[str, int, bytes]:
        """Host, port and the request target of ``url``."""
        split = urlsplit(url)
        if split.scheme != "http" or split.hostname is None:
            raise Unreachable(f"replica address {url[:100]!r} is not http://host:port/...")
        target = split.path or "/"
        if split.query:
            target += "?" + split.query
        return split.hostname, split.port or 80, target.encode("latin-1")


def _head(prefix: bytes, headers: dict[str, str], length: int) -> bytes:
    lines = [prefix, str(length).encode("ascii"), b"\r\n"]
    for name, value in headers.items():
        lines += [name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n"]
    lines.append(b"\r\n")
    return b"".join(lines)
