"""``python -m loopml.serve.gateway``: one gateway process (see ``_proxy``), as ``loopml up``
starts it when ``gateway.port`` is set.

It binds the gateway port with ``SO_REUSEPORT`` (so several processes share it and the
kernel spreads connections over them), follows the platform's route table by long poll
(a change reaches it in one round trip), reports to the platform about every 100 ms, and
stops on SIGTERM: it stops taking connections, answers what it holds, posts its last report
and exits. Its settings come from the environment, as its supervisor sets them:
``LOOPML_GATEWAY_SECRET`` (the platform's secret for its gateway) and
``LOOPML_GATEWAY_CONFIG`` (the ``gateway`` settings section, as JSON).

In front of the platform (``--front``, ``gateway.front``) it serves the listening socket
the platform opened on ``server.port`` and hands it (``--fd``): connections wait in its
backlog while a gateway process restarts, and every request that is not a serving path
goes to the platform's loopback address (``--platform``) through a ``_tunnel.Tunnel``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from loopml.serve.gateway._proxy import ProxyServer
from loopml.serve.gateway._tunnel import LOOPBACK, Front, trust
from loopml.serve.gateway._upstream import Unreachable, UpstreamTimeout
from loopml.serve.gateway.config import GatewayConfig
from loopml.serve.gateway.wire import (
    REPORT_PATH,
    ROUTES_PATH,
    SECRET_ENV,
    SECRET_HEADER,
    Report,
    encode_report,
    parse_route_table,
)
from loopml.system import heap
from loopml.system.lifeline import die_with_parent

log = logging.getLogger("loopml.serve.gateway")

CONFIG_ENV = "LOOPML_GATEWAY_CONFIG"
REPORT_EVERY_S = 0.1
RECOVER_EVERY_S = 2.0
"""How long a replica a request failed to reach is left out before it is tried again (the
platform's table drops one that is really gone)."""


class GatewayProcess:
    """The server, the route table's follower and the reporter of one gateway process."""

    def __init__(self, proxy: ProxyServer) -> None:
        self.proxy = proxy
        self._busy = False
        self._internal = {SECRET_HEADER: proxy.secret, "host": proxy.platform_host}

    async def follow(self) -> None:
        """Hold the newest route table: ask for the one after ours, again and again."""
        version = 0
        while True:
            url = f"{self.proxy.platform_url}{ROUTES_PATH}?after={version}"
            try:
                answer = await self.proxy.platform.send("GET", url, b"", dict(self._internal))
            except (Unreachable, UpstreamTimeout) as exc:
                log.warning("the platform's route table is out of reach (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            if answer.status != 200:
                log.error("the platform refused the route table (%s); retrying", answer.status)
                await asyncio.sleep(1.0)
                continue
            try:
                table = parse_route_table(answer.content)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("the platform's route table does not parse (%r); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            if table.version != version:
                self.proxy.table = table
                version = table.version
                log.info("route table %d: %d deployments", version, len(table.deployments))

    async def recover(self) -> None:
        """Try again, now and then, the replicas a request failed to reach."""
        while True:
            await asyncio.sleep(RECOVER_EVERY_S)
            for deployment in self.proxy.table.deployments.values():
                for revision in deployment.routes.revisions:
                    for backend in revision.backends:
                        backend.failed = False

    async def report_forever(self) -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            try:
                await self.report()
            except Exception:  # a task that died here would stop every later report
                log.exception("a report failed; the next one is in %g s", REPORT_EVERY_S)

    async def report(self) -> bool:
        """Post what happened since the last report; keep it for the next one if the platform
        did not take it. ``True`` when nothing is left to post."""
        proxy = self.proxy
        report = proxy.report
        report.process = os.getpid()
        report.inflight = inflight = {
            backend.url: backend.inflight
            for deployment in proxy.table.deployments.values()
            for revision in deployment.routes.revisions
            for backend in revision.backends
            if backend.inflight
        }
        # One report more once nothing is in flight, so the platform's counts go to zero.
        if not report and not self._busy:
            return True
        self._busy = bool(inflight)
        proxy.report = Report()
        headers = {**self._internal, "content-type": "application/octet-stream"}
        try:
            answer = await proxy.platform.send(
                "POST", proxy.platform_url + REPORT_PATH, encode_report(report), headers
            )
        except (Unreachable, UpstreamTimeout) as exc:
            log.warning("a report could not reach the platform (%s); kept for the next", exc)
            self._keep(report)
            return False
        if answer.status >= 500 or answer.status in (408, 409, 429):
            self._keep(report)
            return False
        if answer.status >= 300:
            log.error(
                "the platform refused a report (%s, %d answers dropped): %s",
                answer.status,
                len(report.answers),
                answer.content[:300],
            )
        return not proxy.report

    def _keep(self, report: Report) -> None:
        """Put a report that was not taken back before what came since."""
        proxy = self.proxy
        newer = proxy.report
        report.touched |= newer.touched
        report.observed += newer.observed
        report.answers += newer.answers
        proxy.bound(report, proxy.max_answers)
        proxy.report = report


def bind(host: str, port: int, *, shared: bool = True) -> socket.socket:
    """A listening socket; ``shared``: the gateway port's, with ``SO_REUSEPORT`` so the other
    gateway processes bind it too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared and hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(sock: socket.socket, proxy: ProxyServer) -> None:
    """Serve until SIGTERM or SIGINT, then stop as the module docstring says."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await proxy.start()
    process = GatewayProcess(proxy)
    tasks = [
        asyncio.create_task(process.follow()),
        asyncio.create_task(process.report_forever()),
        asyncio.create_task(process.recover()),
    ]
    server = await loop.create_server(proxy.protocol, sock=sock)
    log.info("gateway process %d serving on %s", os.getpid(), sock.getsockname())
    await stop.wait()
    server.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), 5)
    for task in tasks:
        task.cancel()
    for _ in range(4):  # the last answers, for the prediction log (up to about 1 s)
        if await process.report():
            break
        await asyncio.sleep(0.25)
    if proxy.report.answers:
        log.error(
            "%d answers not posted to the prediction log: the platform stopped first",
            len(proxy.report.answers),
        )
    await proxy.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loopml.serve.gateway")
    parser.add_argument("--host", default="127.0.0.1")
    listen = parser.add_mutually_exclusive_group(required=True)
    listen.add_argument("--port", type=int, help="bind this port (shared, SO_REUSEPORT)")
    listen.add_argument("--fd", type=int, help="serve this inherited listening socket")
    parser.add_argument("--platform", required=True, help="the platform's URL (loopback)")
    parser.add_argument(
        "--front", action="store_true", help="pass what is not a serving path to the platform"
    )
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    if args.parent_pid is not None and not die_with_parent(args.parent_pid):
        return 0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s gateway[%(process)d] %(levelname)s %(message)s"
    )
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        print(f"{SECRET_ENV} is not set: the platform starts its gateways", file=sys.stderr)
        return 2
    raw = os.environ.get(CONFIG_ENV)
    config = GatewayConfig.model_validate_json(raw) if raw else GatewayConfig()
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
        sock.setblocking(False)
    else:
        try:
            sock = bind(args.host.strip("[]"), args.port)
        except OSError as exc:
            print(f"cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
            return 1
    front = None
    if args.front:
        address = urlsplit(args.platform)
        if address.hostname is None or address.port is None:
            print(f"--platform {args.platform!r} names no host and port", file=sys.stderr)
            return 2
        # Whose X-Forwarded-For counts: as the platform's uvicorn would judge it on its own.
        trusted = trust(os.environ.get("FORWARDED_ALLOW_IPS", LOOPBACK))
        front = Front(address.hostname, address.port, trusted)
    proxy = ProxyServer(args.platform, secret, config, front=front)
    heap.settle()  # see loopml.system.heap
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(serve(sock, proxy))
    else:
        uvloop.run(serve(sock, proxy))
    return 0
