"""The floor for ``bench/serving.py``: a bare Starlette app that parses a JSON body and sends
it back, under uvicorn with the model server's settings (no access log, no server header).

Run: ``python bench/_echo_app.py PORT``. ``POST /predict`` echoes; ``GET /health`` is 200.
"""

from __future__ import annotations

import sys

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def predict(request: Request) -> Response:
    body = orjson.loads(await request.body())
    return Response(orjson.dumps(body), media_type="application/json")


async def health(request: Request) -> Response:
    return Response(b'{"ok":true}', media_type="application/json")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health)])

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=False,
        log_level="warning",
        server_header=False,
    )
