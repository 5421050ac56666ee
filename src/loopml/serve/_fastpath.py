"""Inference requests straight to their handler, past Starlette's router and exception layer:
``InferenceFastPath`` in the model server, ``GatewayFastPath`` in the platform app.

A profile of the model server under load (1-row requests, 32 connections) put the model
itself at a few per cent of the CPU and Starlette's routing (a regular expression per route
until one matches), its exception middleware and the request-response wrapper at about a
quarter. The inference routes are the hot path, so this pure ASGI middleware recognises
``POST /predict`` and ``POST /v2/models/{name}[/versions/{v}]/infer`` by splitting the path
and calls their (guarded) endpoint itself. Everything else, other methods on those paths
included, goes on to the router, which answers it as before.

Nothing changes for the handler: it gets the same ``Request``, the same path parameters, and
``scope["route"]`` is set to the route it would have matched (the metrics label). Its guard
turns every exception into the error body, as it does behind the router.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

_PREDICT = "/predict"
_MODELS = "/v2/models/"
_INFER = "/v2/models/{name}/infer"
_VERSIONED_INFER = "/v2/models/{name}/versions/{version}/infer"
_GATEWAY_PREFIXES = ("/deployments/", "/projects/", "/v2/", "/metrics")


class InferenceFastPath:
    """Pure ASGI middleware; see the module docstring.

    Args:
        app: the rest of the app (the router).
        routes: the POST routes by path; those named above are served here when present.
    """

    def __init__(self, app: ASGIApp, routes: dict[str, Route]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            matched = self._match(scope["path"])
            if matched is not None:
                route, params = matched
                scope["route"] = route
                scope["path_params"] = params
                response = await route.endpoint(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _match(self, path: str) -> tuple[Route, dict[str, str]] | None:
        if path == _PREDICT:
            route = self.routes.get(_PREDICT)
            return None if route is None else (route, {})
        if not path.startswith(_MODELS):
            return None
        # Starlette's ``{name}`` is one non-empty segment: so is each part here.
        parts = path[len(_MODELS) :].split("/")
        if len(parts) == 2 and parts[1] == "infer" and parts[0]:
            route = self.routes.get(_INFER)
            return None if route is None else (route, {"name": parts[0]})
        if len(parts) != 4 or parts[1] != "versions" or parts[3] != "infer":
            return None
        route = self.routes.get(_VERSIONED_INFER)
        if route is None or not (parts[0] and parts[2]):
            return None
        return route, {"name": parts[0], "version": parts[2]}


class GatewayFastPath:
    """The gateway's routes, matched ahead of the platform app's own layers.

    Mounted inside the request guard (which still applies to every request), it serves a
    request that fully matches one of the gateway's routes by calling that route's guarded
    endpoint, skipping FastAPI's exception and exit-stack middleware and its router, which a
    profile of the gateway under load put at about a tenth of its CPU. The gateway's routes
    come first in the platform's router anyway, so what answers a request does not change;
    anything else (another method on a gateway path included) goes on to the app. An
    unexpected exception still reaches the app's outermost error middleware (a 500).

    Args:
        app: the rest of the platform app.
        routes: the gateway's routes (``Gateway.routes()``).
    """

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = [route for route in routes if isinstance(route, Route)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(_GATEWAY_PREFIXES):
            for route in self.routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    response = await route.endpoint(Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
                if match is Match.PARTIAL:
                    break
        await self.app(scope, receive, send)
