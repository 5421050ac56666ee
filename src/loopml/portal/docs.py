"""The API reference at ``/docs``: Swagger UI 5 (npm ``swagger-ui-dist``, vendored under
``static/vendor`` by ``make assets``) over ``/api/v1/openapi.json``, served by loopml itself
(no CDN). Swagger UI 4 cannot read the OpenAPI 3.1 document FastAPI writes; 5 can. The page
has no inline script (``static/docs.js`` starts Swagger UI), so a strict CSP holds."""

from __future__ import annotations

from html import escape

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>loopml API reference</title>
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
    """Serve the ``/docs`` page (its files are the portal's static files)."""
    page = PAGE.format(openapi=escape(app.openapi_url or "/api/v1/openapi.json"))

    async def reference() -> HTMLResponse:
        return HTMLResponse(page)

    app.add_api_route("/docs", reference, methods=["GET"], include_in_schema=False)
