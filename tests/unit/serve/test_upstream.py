"""The gateway's upstream client against raw sockets that answer as a test needs: kept-alive
connections, chunked and closing answers, a replica that closes an idle connection, garbage,
refusals and timeouts (the gateway's paths over it are in test_serving_fast_paths.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from loopml.serve.gateway._upstream import Unreachable, UpstreamClient, UpstreamTimeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def _ok(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-secret: no\r\n"
        + extra
        + b"content-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class _Server:
    """A server that calls ``handler(reader, writer, n)`` per request on each connection
    (``n`` counts requests on that connection) until it returns False."""

    def __init__(
        self, server: asyncio.Server, writers: list[asyncio.StreamWriter], bodies: list[int]
    ) -> None:
        self.server = server
        self.writers = writers
        self.bodies = bodies  # the size of each request body received
        self.port: int = server.sockets[0].getsockname()[1]

    @property
    def connections(self) -> int:
        return len(self.writers)

    async def close(self) -> None:
        """Close every connection and the listener, and wait until they are closed."""
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        self.server.close()
        await self.server.wait_closed()
        await asyncio.sleep(0.05)  # the handlers see their connections closed, and return


async def _serve(handler: Handler) -> _Server:
    writers: list[asyncio.StreamWriter] = []
    bodies: list[int] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        n = 0
        try:
            while (request := await _read_request(reader)) is not None:
                bodies.append(len(request.split(b"\r\n\r\n", 1)[1]))
                n += 1
                if not await handler(reader, writer, n):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return _Server(await asyncio.start_server(on_connection, "127.0.0.1", 0), writers, bodies)


def _client(timeout_s: float = 2.0) -> UpstreamClient:
    return UpstreamClient(connect_timeout_s=0.5, timeout_s=timeout_s, max_connections=8)


@contextlib.asynccontextmanager
async def _upstream(
    handler: Handler, timeout_s: float = 2.0
) -> AsyncIterator[tuple[_Server, UpstreamClient, str]]:
    """A server running ``handler`` and a started client; yields both and the server's URL,
    then closes the client and the server."""
    server = await _serve(handler)
    client = _client(timeout_s)
    await client.start()
    try:
        yield server, client, f"http://127.0.0.1:{server.port}"
    finally:
        await client.close()
        await server.close()


def _answering(reply: bytes, *, keep_open: bool = True) -> Handler:
    """A handler that writes ``reply`` to every request (then keeps the connection, or not)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(reply)
        await writer.drain()
        return keep_open

    return handler


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def test_calls_reuse_one_connection_and_pass_on_only_known_headers() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_ok(b'{"n": %d}' % n))
        await writer.drain()
        return True

    async def scenario() -> None:
        async with _upstream(handler) as (server, client, url):
            answers = [await client.send("POST", f"{url}/predict?a=1", b"{}", {}) for _ in range(5)]
        assert [a.content for a in answers] == [b'{"n": %d}' % n for n in range(1, 6)]
        assert answers[0].status == 200
        assert answers[0].headers == {"content-type": "application/json"}
        assert server.connections == 1

    _run(scenario)


def test_a_chunked_answer_is_put_together() -> None:
    chunked = _answering(
        b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n"
        b"retry-after: 1\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )

    async def scenario() -> None:
        async with _upstream(chunked) as (_, client, url):
            answer = await client.send("POST", f"{url}/x", b"", {})
        assert (answer.status, answer.content) == (503, b"hello world")
        assert answer.headers == {"retry-after": "1"}

    _run(scenario)


def test_a_connection_the_replica_closed_while_idle_is_replaced_not_failed() -> None:
    closing = _answering(_ok(b"{}"), keep_open=False)  # closes after each answer, unannounced

    async def scenario() -> None:
        async with _upstream(closing) as (server, client, url):
            for _ in range(3):
                answer = await client.send("POST", f"{url}/p", b"{}", {})
                assert answer.status == 200
                await asyncio.sleep(0.05)  # the close reaches the client while idle
        assert server.connections == 3

    _run(scenario)


def test_a_reused_connection_closed_before_answering_is_retried_once_on_a_new_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if n >= 2:
            return False  # the replica closes a kept-alive connection as the request arrives
        writer.write(_ok(b"{}"))
        await writer.drain()
        return True

    async def scenario() -> None:
        async with _upstream(handler) as (server, client, url):
            statuses = [(await client.send("POST", f"{url}/p", b"{}", {})).status for _ in range(3)]
        assert statuses == [200, 200, 200]
        assert server.connections == 3

    _run(scenario)


def test_connection_close_answers_are_not_reused() -> None:
    async def scenario() -> None:
        async with _upstream(_answering(_ok(b"{}", b"connection: close\r\n"))) as (
            server,
            client,
            url,
        ):
            for _ in range(3):
                assert (await client.send("GET", f"{url}/", b"", {})).status == 200
        assert server.connections == 3

    _run(scenario)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"this is not http\r\n\r\n", "does not parse"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort", "closed the connection"),
    ],
)
def test_garbage_or_a_cut_answer_is_unreachable(reply: bytes, message: str) -> None:
    async def scenario() -> None:
        async with _upstream(_answering(reply, keep_open=False)) as (_, client, url):
            with pytest.raises(Unreachable, match=message):
                await client.send("POST", f"{url}/p", b"{}", {})

    _run(scenario)


def test_a_refused_connection_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def scenario() -> None:
        client = _client()
        await client.start()
        with pytest.raises(Unreachable, match="cannot connect"):
            await client.send("POST", f"http://127.0.0.1:{port}/p", b"{}", {})
        await client.close()

    _run(scenario)


def test_a_slow_answer_times_out_and_its_connection_is_dropped() -> None:
    release = asyncio.Event()
    calls: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        calls.append(n)
        if len(calls) == 1:  # the first request of all: no answer until released
            await release.wait()
            return False
        writer.write(_ok(b"{}"))
        await writer.drain()
        return True

    async def scenario() -> None:
        async with _upstream(handler, timeout_s=0.3) as (server, client, url):
            with pytest.raises(UpstreamTimeout):
                await client.send("POST", f"{url}/p", b"{}", {})
            answer = await client.send("POST", f"{url}/p", b"{}", {})
            release.set()
        assert answer.status == 200
        assert server.connections == 2  # the timed-out connection was not reused

    _run(scenario)


def test_a_large_body_arrives_whole() -> None:
    async def scenario() -> None:
        body = b"x" * (3 * 1024 * 1024)
        async with _upstream(_answering(_ok(b"{}"))) as (server, client, url):
            answer = await client.send("POST", f"{url}/p", body, {})
        assert answer.status == 200
        assert server.bodies == [len(body)]

    _run(scenario)
