"""Mounting the portal on an app (`install`): its pages, its static files and the API reference."""

from __future__ import annotations

from functools import cache

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.routing import BaseRoute

from loopml.portal import docs
from loopml.portal.pages import ROUTERS
from loopml.portal.viewer import HERE


@cache
def _page_routes() -> tuple[BaseRoute, ...]:
    """The pages' routes, built once for the process and shared by each app it makes (as
    the API's are, ``loopml.platform.app``): they hold no state of an app's."""
    template = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    for router in ROUTERS:
        template.include_router(router)
    return tuple(template.router.routes)


def install(app: FastAPI) -> None:
    """Put the portal's pages, static files and ``/docs`` on ``app``."""
    docs.install(app)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.router.routes.extend(_page_routes())
