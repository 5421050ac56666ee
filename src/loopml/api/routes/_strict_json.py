"""JSON bodies as the JSON standard defines them: ``NaN`` and ``Infinity`` are refused.

Python's ``json`` module (which Starlette uses to read a request body) accepts the bare words
``NaN``, ``Infinity`` and ``-Infinity``, which RFC 8259 does not. A non-finite number taken in
that way reached stores and encoders that refuse it (``json.dumps(allow_nan=False)``, the
database's JSON columns) and became a 500. Every router is built with ``route_class=
StrictJSONRoute``, so such a body is a 422 before any route code runs.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response

from loopml.core.jsontext import loads_strict
from loopml.faces.routes import DeclaredRoute


class StrictJSONRequest(Request):
    """A request whose ``json()`` is ``loads_strict``."""

    async def json(self) -> Any:
        """The body decoded by ``loads_strict`` (cached, like Starlette's).

        FastAPI answers the ``JSONDecodeError`` it raises with its 422 ``json_invalid``
        error, and ``platform/errors.py`` keeps the reason in the message.
        """
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJSONRoute(DeclaredRoute):
    """An API route that reads its JSON body with ``loads_strict``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, handed a ``StrictJSONRequest``."""
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
