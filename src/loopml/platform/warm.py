"""Warming the app's routes before the first request.

FastAPI (0.165) builds an included router's per-route state (each endpoint's dependencies)
the first time a request's path is matched against that router. The portal's routers come
after all the API's, so a fresh server's first page paid for every router at once: 1.6 s of
CPU in-process, 2 to 3.5 s on a loaded machine. Matching one path that no route takes walks
every router once and builds it all, through Starlette's public ``BaseRoute.matches``.
"""

from __future__ import annotations

import logging
import threading
import time

from fastapi import FastAPI

from loopml.core.timeline import mark

log = logging.getLogger(__name__)

# No route takes it: matching it walks every router to the end.
_NOWHERE = "/\x00loopml-warm-routes"


def warm_routes(app: FastAPI) -> float:
    """Match a path no route takes against every route of ``app``; the CPU seconds spent."""
    started = time.process_time()
    scope = {
        "type": "http",
        "method": "GET",
        "path": _NOWHERE,
        "raw_path": _NOWHERE.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }
    for route in app.router.routes:
        route.matches(dict(scope))
    return time.process_time() - started


def warm_in_background(app: FastAPI) -> threading.Thread:
    """``warm_routes`` on a daemon thread, so the server listens meanwhile (a request that
    comes first waits on FastAPI's own lock for the router it needs)."""

    def run() -> None:
        try:
            spent = warm_routes(app)
        except Exception:  # a best effort: the first request builds what is left
            log.exception("warming the routes failed")
            return
        log.debug("routes warmed in %.2f s of CPU", spent)
        mark("routes warmed")

    thread = threading.Thread(target=run, name="loopml-warm-routes", daemon=True)
    thread.start()
    return thread
