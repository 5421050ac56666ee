"""The platform's end of its gateway processes (``gateway.port``): it feeds them the route
table and takes their reports (``loopml.serve.gateway.wire`` says what each carries), and
``loopml.deploy.gateways`` keeps the processes running.

- ``GET /internal/gateway/routes?after=V`` answers the table as soon as its version is past
  ``V``, else waits (up to ``POLL_S``, 2 s) for a change: a canary moved from 10 to 50 %, a replica
  ready or gone reaches every gateway process in one round trip. The table is rebuilt from
  the local target's published routes every ``REFRESH_S`` and gets a new version only when
  its bytes change.
- ``POST /internal/gateway/report`` folds a report into the platform: the deployments that
  got requests are touched (scale to zero's idle clock), each metrics sample goes to the
  gateway's metrics (so ``/metrics`` and the monitor count the gateway processes' traffic
  with the platform's own), and each answer to the prediction log, with the time its
  request arrived.

Both check the secret the platform gave its gateway processes; neither is in the API's
schema. They are routes of the platform's port, reached over loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from loopml.serve.gateway.app import Gateway
from loopml.serve.gateway.routing import Backend
from loopml.serve.gateway.wire import (
    REPORT_PATH,
    ROUTES_PATH,
    SECRET_HEADER,
    decode_report,
    routes_document,
    versioned,
)
from loopml.settings import Settings

log = logging.getLogger("loopml.platform.gateway_link")

REFRESH_S = 0.05
POLL_S = 2.0
"""A long poll's longest wait: short, so a stopping platform waits no longer for it."""
STALE_S = 2.0


class GatewayLink:
    """The route feed and the report intake of the platform's gateway processes.

    Args:
        gateway: the platform's own gateway (its route source, metrics and answer hook).
        settings: the platform's settings (authentication, the body limit, allowed hosts).
        secret: what the gateway processes send (``loopml up`` spawned them with it);
            a new one when omitted.
    """

    def __init__(self, gateway: Gateway, settings: Settings, secret: str | None = None) -> None:
        self.gateway = gateway
        self.secret = secret or secrets.token_urlsafe(32)
        self._auth_enabled = settings.auth.enabled
        self._max_body_bytes = settings.server.max_body_bytes
        self._hosts = sorted(
            {h.lower() for h in settings.server.allowed_hosts} | {settings.server.host.lower()}
        )
        self.version = 0
        self._document = b""
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Each gateway process's requests in flight by replica URL, and when it said so.
        self._inflight: dict[int, tuple[float, dict[str, int]]] = {}
        self._seen: dict[str, Backend] = {}

    def routes(self) -> list[BaseRoute]:
        return [
            Route(ROUTES_PATH, self._routes, methods=["GET"]),
            Route(REPORT_PATH, self._report, methods=["POST"]),
        ]

    async def start(self) -> None:
        self.refresh()
        self._task = asyncio.create_task(self._refreshing())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def refresh(self) -> None:
        """Rebuild the table from the published routes; a new version if it changed."""
        document = routes_document(
            self.gateway.source.all_routes(),
            auth_enabled=self._auth_enabled,
            max_body_bytes=self._max_body_bytes,
            allowed_hosts=self._hosts,
        )
        if document != self._document:
            self._document = document
            self.version += 1
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    async def _refreshing(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                self.refresh()
                self._count_inflight()
            except Exception:
                log.exception("the gateway route table could not be rebuilt; retrying")

    def _allowed(self, request: Request) -> bool:
        given = request.headers.get(SECRET_HEADER, "")
        return hmac.compare_digest(given.encode(), self.secret.encode())

    async def _routes(self, request: Request) -> Response:
        if not self._allowed(request):
            return _refused()
        try:
            after = int(request.query_params.get("after", "0"))
        except ValueError:
            after = 0
        if self.version <= after:
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), POLL_S)
        return Response(versioned(self.version, self._document), media_type="application/json")

    async def _report(self, request: Request) -> Response:
        if not self._allowed(request):
            return _refused()
        try:
            report = decode_report(await request.body())
        except (ValueError, KeyError, TypeError) as exc:
            return Response(
                f'{{"error": "not a gateway report: {type(exc).__name__}"}}',
                status_code=400,
                media_type="application/json",
            )
        gateway = self.gateway
        for project, name in report.touched:
            gateway.source.touch(project, name)
        observe = gateway.metrics.observe
        for project, name, model, version, revision, status, seconds, code, who in report.observed:
            observe((project, name), model, version, revision, status, seconds, code, who)
        hook = gateway.on_answer
        if hook is not None:
            for answer in report.answers:
                hook(answer)
        if report.process:
            self._inflight[report.process] = (time.monotonic(), report.inflight)
        return Response(status_code=204)

    def _count_inflight(self) -> None:
        """Each replica's requests in flight in the gateway processes (``Backend.remote``),
        for draining and autoscaling; a process silent for ``STALE_S`` (killed) counts none."""
        now = time.monotonic()
        totals: dict[str, int] = {}
        for process, (when, counts) in list(self._inflight.items()):
            if now - when > STALE_S:
                del self._inflight[process]
                continue
            for url, count in counts.items():
                totals[url] = totals.get(url, 0) + count
        # A replica left out of the routes (draining) keeps its count until it is zero.
        seen = self._seen
        current = {
            backend.url: backend
            for routes in self.gateway.source.all_routes()
            for revision in routes.revisions
            for backend in revision.backends
        }
        for url in list(seen):
            if url not in current and not totals.get(url):
                seen.pop(url).remote = 0
        seen.update(current)
        for url, backend in seen.items():
            backend.remote = totals.get(url, 0)


def _refused() -> Response:
    return Response(
        '{"error": "this path is for the platform\'s own gateway processes"}',
        status_code=403,
        media_type="application/json",
    )
