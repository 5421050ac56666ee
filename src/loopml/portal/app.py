"""Putting the portal on an app: its pages, its static files and the API reference."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from loopml.portal import docs
from loopml.portal.pages import ROUTERS
from loopml.portal.web import HERE


def install(app: FastAPI) -> None:
    """Put the portal's pages, static files and ``/docs`` on ``app``."""
    docs.install(app)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in ROUTERS:
        app.include_router(router)
