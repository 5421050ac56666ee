"""The app's API routes as (method, path template, route): what the permission table and the
route-walking tests read.

FastAPI 0.165 keeps an included router as one entry of ``app.routes`` and builds its routes'
effective paths lazily; ``iter_route_contexts`` gives them with the prefix applied.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts


def iter_api_routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute]]:
    """Every (method, path template, route) of the app's API routes (``HEAD`` left out).

    The gateway's Starlette routes (the serving path) are not API routes and are not listed.
    """
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        path = context.path or route.path
        for method in sorted(context.methods or route.methods or ()):
            if method != "HEAD":
                yield method, path, route
