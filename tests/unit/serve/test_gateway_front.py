"""A gateway process in front of the platform (``gateway.front``): what it does not serve goes
to the platform through a tunnel, streamed both ways and in order. The gateway's protocol runs
here on a real socket in front of a real uvicorn (a small app standing in for the platform's
routes, so each test can see exactly what arrived), with clients on raw sockets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from loopml.serve.gateway._connection import Connection
from loopml.serve.gateway._proxy import ProxyServer
from loopml.serve.gateway._tunnel import HIGH_WATER, Front, trust
from loopml.serve.gateway.config import GatewayConfig
from loopml.serve.gateway.wire import RouteTable

Scenario = Callable[[int, "Platform"], Awaitable[None]]


class Platform:
    """The stand-in platform: what it saw, and the gate its streamed answer waits at."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.predicted: list[int] = []
        self.app = Starlette(
            routes=[
                Route("/echo", self.echo, methods=["GET"]),
                Route("/upload", self.upload, methods=["PUT"]),
                Route("/small", self.small, methods=["PUT"]),
                Route("/drip", self.drip, methods=["GET"]),
                Route("/deployments/churn/predict", self.predict, methods=["POST"]),
            ]
        )

    async def echo(self, request: Request) -> Response:
        client = request.client.host if request.client else None
        forwarded = request.headers.getlist("x-forwarded-for")
        return JSONResponse({"client": client, "headers": forwarded, "scheme": request.url.scheme})

    async def upload(self, request: Request) -> Response:
        digest, size = hashlib.sha256(), 0
        async for piece in request.stream():
            digest.update(piece)
            size += len(piece)
        return JSONResponse({"size": size, "sha256": digest.hexdigest()})

    async def small(self, request: Request) -> Response:
        """Refuses a body past 64 KiB as soon as it is past, and closes, as the platform's
        upload limit does: uvicorn resets the connection over the body still unread."""
        size = 0
        async for piece in request.stream():
            size += len(piece)
            if size > 65536:
                refusal = {"error": "too large"}
                return JSONResponse(refusal, status_code=413, headers={"connection": "close"})
        return JSONResponse({"size": size})

    async def drip(self, request: Request) -> Response:
        async def pieces() -> AsyncIterator[bytes]:
            yield b"first\n"
            await self.released.wait()
            yield b"second\n"

        return StreamingResponse(pieces(), media_type="text/plain")

    async def predict(self, request: Request) -> Response:
        n = (await request.json())["n"]
        self.predicted.append(n)
        if n == 1:  # slower than what is pipelined behind it: the order is the gateway's work
            await asyncio.sleep(0.3)
        return JSONResponse({"relayed": n})


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    return sock


def run(
    scenario: Scenario,
    *,
    platform_port: int | None = None,
    proxies: str | None = None,
    hosts: frozenset[str] = frozenset(),
) -> None:
    """``scenario(gateway_port, platform)`` with a gateway in front of the stand-in platform
    (or of ``platform_port``, where something else listens or nothing does), trusting the
    forwarding headers of ``proxies`` (``FORWARDED_ALLOW_IPS``'s form), or nobody's, and
    serving ``hosts`` (the route table's allowed hosts; empty: not yet known)."""

    async def main() -> None:
        platform = Platform()
        inner = _listener()
        server = uvicorn.Server(uvicorn.Config(platform.app, log_level="warning", lifespan="off"))
        serving = asyncio.create_task(server.serve(sockets=[inner]))
        while not server.started:
            await asyncio.sleep(0.01)
        port = inner.getsockname()[1]
        proxy = ProxyServer(
            f"http://127.0.0.1:{port}",
            "secret",
            GatewayConfig(),
            front=Front(
                "127.0.0.1",
                platform_port or port,
                trust(proxies) if proxies is not None else Front.trusted,
            ),
        )
        proxy.table = RouteTable(allowed_hosts=hosts)
        await proxy.start()
        outer = _listener()
        connections: list[Connection] = []

        def connection() -> Connection:
            made = cast(Connection, proxy.protocol())
            connections.append(made)
            return made

        gateway = await asyncio.get_running_loop().create_server(connection, sock=outer)
        try:
            await asyncio.wait_for(scenario(outer.getsockname()[1], platform), 30)
        finally:
            gateway.close()
            for made in connections:  # some linger after the platform closed (see _tunnel)
                if made.transport is not None:
                    made.transport.close()
                if made.tunnel is not None and made.tunnel.platform is not None:
                    made.tunnel.platform.close()
            await asyncio.sleep(0.05)
            await proxy.close()
            server.should_exit = True
            await serving

    asyncio.run(main())


async def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection, read until the gateway closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


def _bodies(answers: bytes) -> list[bytes]:
    """The bodies of answers with a content-length, in order."""
    found = []
    while answers:
        head, _, rest = answers.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        found.append(rest[:length])
        answers = rest[length:]
    return found


def _get(path: str, *, close: bool = False, extra: bytes = b"") -> bytes:
    connection = b"connection: close\r\n" if close else b""
    return b"GET %b HTTP/1.1\r\nhost: 127.0.0.1\r\n%b%b\r\n" % (path.encode(), extra, connection)


def _predict(n: int) -> bytes:
    body = json.dumps({"n": n}).encode()
    return (
        b"POST /deployments/churn/predict HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body)
    )


FORWARDED = (
    b"x-forwarded-for: 10.9.9.9\r\nx-forwarded-for: 10.8.8.8\r\nx-forwarded-proto: https\r\n"
)


def test_the_platform_sees_the_clients_address_never_a_forged_one() -> None:
    async def scenario(port: int, platform: Platform) -> None:
        answer = await _exchange(port, _get("/echo", close=True, extra=FORWARDED))
        seen = json.loads(_bodies(answer)[0])
        assert seen == {"client": "127.0.0.1", "headers": ["127.0.0.1"], "scheme": "http"}

    run(scenario, proxies="10.0.0.0/8")  # a proxy's headers count, not this client's


def test_a_trusted_proxy_keeps_its_clients_address_and_scheme() -> None:
    async def scenario(port: int, platform: Platform) -> None:
        answer = await _exchange(port, _get("/echo", close=True, extra=FORWARDED))
        seen = json.loads(_bodies(answer)[0])
        # The platform's uvicorn trusts loopback (the gateway): the nearest address before
        # the proxy's is the client, with the scheme the proxy said.
        assert seen["headers"] == ["10.9.9.9, 10.8.8.8, 127.0.0.1"]
        assert seen["client"] == "10.8.8.8"
        assert seen["scheme"] == "https"

    run(scenario, proxies="127.0.0.0/8,::1")


def test_uploads_cross_whole_chunked_or_not_and_a_connection_keeps_its_order() -> None:
    payload = bytes(range(256)) * (3 * HIGH_WATER // 256 + 17)  # more than the tunnel holds
    digest = hashlib.sha256(payload).hexdigest()
    chunked = b"".join(
        b"%x\r\n%b\r\n" % (len(piece), piece)
        for piece in (payload[i : i + 65_537] for i in range(0, len(payload), 65_537))
    )

    async def scenario(port: int, platform: Platform) -> None:
        plain = b"PUT /upload HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: %d\r\n\r\n%b" % (
            len(payload),
            payload,
        )
        pieces = b"PUT /upload HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n\r\n"
        # Pipelined: a serving request the gateway relays itself, then the platform's from
        # the first upload on (the serving request after them too), in one write.
        sent = _predict(1) + plain + pieces + chunked + b"0\r\n\r\n" + _predict(2)
        answer = await _exchange(port, sent + _get("/echo", close=True))
        bodies = [json.loads(body) for body in _bodies(answer)]
        assert bodies[0] == {"relayed": 1}
        assert bodies[1] == bodies[2] == {"size": len(payload), "sha256": digest}
        assert bodies[3] == {"relayed": 2}
        assert bodies[4]["client"] == "127.0.0.1"
        assert len(bodies) == 5

    run(scenario)


def test_a_streamed_answer_reaches_the_client_as_the_platform_writes_it() -> None:
    async def scenario(port: int, platform: Platform) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_get("/drip", close=True))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        # The second piece is held back by the platform: the first must arrive without it.
        first = await asyncio.wait_for(reader.readuntil(b"first\n"), 5)
        assert first.endswith(b"first\n")
        platform.released.set()
        rest = await reader.read()
        assert b"second\n" in rest
        writer.close()

    run(scenario)


def test_an_upgraded_connection_passes_bytes_untouched() -> None:
    async def upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n"
        )
        while data := await reader.read(65536):
            writer.write(data.upper())
        writer.close()

    async def scenario(port: int, platform: Platform) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /socket HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: echo\r\n"
            b"connection: upgrade\r\n\r\nnot http at all\r\n\r\n"
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        assert await reader.readexactly(19) == b"NOT HTTP AT ALL\r\n\r\n"
        writer.write(b"more")
        assert await reader.readexactly(4) == b"MORE"
        writer.close()

    async def main() -> None:
        echo = await asyncio.start_server(upgrade, "127.0.0.1", 0)
        port = echo.sockets[0].getsockname()[1]
        async with echo:
            await asyncio.to_thread(run, scenario, platform_port=port)

    asyncio.run(main())


def test_a_platform_out_of_reach_is_a_503_that_says_so() -> None:
    unused = _listener()
    port = unused.getsockname()[1]
    unused.close()  # nothing listens there now

    async def scenario(gateway_port: int, platform: Platform) -> None:
        answer = await _exchange(gateway_port, _get("/echo"))
        assert answer.startswith(b"HTTP/1.1 503")
        assert b"the platform behind this gateway is away" in answer

    run(scenario, platform_port=port)


def test_a_refusal_mid_upload_reaches_the_client() -> None:
    frame = b"%x\r\n%b\r\n" % (1 << 20, b"x" * (1 << 20))

    async def refused(port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"PUT /small HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        try:
            for _ in range(64):  # 64 MiB against 64 KiB
                writer.write(frame)
                await writer.drain()
        except ConnectionError:
            pass  # the gateway stopped reading and closed, after the answer
        answer = await reader.read()
        writer.close()
        return answer

    async def scenario(port: int, platform: Platform) -> None:
        for _ in range(5):  # each on a new connection, the first of its tunnel
            answer = await refused(port)
            assert answer.startswith(b"HTTP/1.1 413"), answer[:100]

    run(scenario)


def _status_and_reason(answer: bytes) -> tuple[int, str]:
    status = int(answer.split(b" ", 2)[1])
    body = json.loads(_bodies(answer)[0])
    # The V2 error body on a V2 path (the message as ``error``), loopml's elsewhere.
    details = body["details"] if isinstance(body["error"], str) else body["error"]["details"]
    return status, details["reason"]


def test_a_missing_repeated_or_foreign_host_is_refused_as_the_platform_refuses_it() -> None:
    body = b'{"n": 7}'
    predict = b"POST /deployments/churn/predict HTTP/1.1\r\n%bcontent-type: application/json\r\n"
    predict += b"content-length: %d\r\n\r\n" % len(body) + body
    cases = {
        b"": "host_missing",
        b"host: 127.0.0.1\r\nhost: evil.example\r\n": "host_repeated",
        b"host: evil.example\r\nhost: 127.0.0.1\r\n": "host_repeated",
        b"host: evil.example\r\n": "host_not_allowed",
    }

    async def scenario(port: int, platform: Platform) -> None:
        for lines, reason in cases.items():
            for request in (
                predict % lines,
                b"GET /metrics HTTP/1.1\r\n%b\r\n" % lines,
                b"GET /v2/models/churn HTTP/1.1\r\n%b\r\n" % lines,
            ):
                answer = await _exchange(port, request)
                assert _status_and_reason(answer) == (400, reason), request
                assert b"connection: close" in answer.lower()
        assert platform.predicted == []  # nothing reached the platform
        allowed = await _exchange(port, predict % b"host: 127.0.0.1\r\nconnection: close\r\n")
        assert _bodies(allowed) == [b'{"relayed":7}']

    run(scenario, hosts=frozenset({"127.0.0.1"}))
