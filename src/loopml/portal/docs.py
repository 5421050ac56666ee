"""The API reference: ``/docs``, drawn on the server from the app's OpenAPI document
(``portal.reference``; no script, so it is usable as soon as it arrives), and ``/docs/try``,
Swagger UI 5 (npm ``swagger-ui-dist``, vendored under ``static/vendor`` by ``make assets``)
over ``/api/v1/openapi.json`` for trying a call, served by loopml itself (no CDN). Swagger UI
4 cannot read the OpenAPI 3.1 document FastAPI writes; 5 can. Neither page has an inline
script (``static/docs.js`` starts Swagger UI), so a strict CSP holds."""

from __future__ import annotations

from html import escape

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from loopml.portal import reference
from loopml.portal.viewer import templates

TRY_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Try the loopml API</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/static/vendor/swagger-ui.css">
</head>
<body>
<main id="swagger-ui" data-openapi="{openapi}"></main>
<script src="/static/vendor/swagger-ui-bundle.js" defer></script>
<script src="/static/docs.js" defer></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/docs/try`` (their files are the portal's static files)."""
    openapi = app.openapi_url or "/api/v1/openapi.json"
    try_page = TRY_PAGE.format(openapi=escape(openapi))
    built: list[reference.ApiReference] = []

    async def docs(request: Request) -> HTMLResponse:
        if not built:  # the document is fixed once the app runs: built on the first visit
            built.append(reference.build(app.openapi()))
        context = {
            "ref": built[0],
            "openapi": openapi,
            "openapi_version": app.openapi()["openapi"],
            "schema_anchor": reference.schema_anchor,
            "viewer": None,
            "page": "docs",
        }
        return templates.TemplateResponse(request, "api_reference.html", context)

    async def try_it() -> HTMLResponse:
        return HTMLResponse(try_page)

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)
    app.add_api_route("/docs/try", try_it, methods=["GET"], include_in_schema=False)
