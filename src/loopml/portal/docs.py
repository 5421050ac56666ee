"""The API reference at ``/docs``: Swagger UI from the ``swagger-ui-bundle`` wheel, served
by loopml itself (no CDN), over ``/api/v1/openapi.json``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

PREFIX = "/static/swagger-ui"


def install(app: FastAPI) -> None:
    """Serve Swagger UI's files and the ``/docs`` page."""
    app.mount(PREFIX, StaticFiles(directory=swagger_ui_path), name="swagger-ui")

    async def reference() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/api/v1/openapi.json",
            title="loopml API reference",
            swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{PREFIX}/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    app.add_api_route("/docs", reference, methods=["GET"], include_in_schema=False)
