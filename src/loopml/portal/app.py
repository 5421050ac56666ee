"""The platform's app: the API's, with the portal's pages, its static files and the API
reference mounted on it."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from loopml.api import create_app as create_api_app
from loopml.api.context import AppContext
from loopml.portal import docs
from loopml.portal.pages import ROUTERS
from loopml.portal.web import HERE, is_form_path
from loopml.settings import Settings


def install(app: FastAPI) -> None:
    """Put the portal's pages, static files and ``/docs`` on ``app``."""
    docs.install(app)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in ROUTERS:
        app.include_router(router)


def create_app(settings: Settings | None = None, *, context: AppContext | None = None) -> FastAPI:
    """The API app (``loopml.api.create_app``, same arguments) with the portal installed; the
    portal's forms pass the cross-site guard only from this server's own origin."""
    app = create_api_app(settings, context=context, form_route=is_form_path)
    install(app)
    return app
