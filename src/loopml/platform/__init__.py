"""The running platform as a program: the app factory that puts the API and the portal on
one app (``app``), what the server starts beside its routes (``startup``), route warm-up
(``warm``), the gateway processes' back-channel (``gateway_link``), serving auth
(``serving_auth``), the embedded monitor (``monitoring``), and what the app factory installs
around every route: the request guard (``guard``), the cross-site guard (``csrf``) and the
error mapping (``errors``); ``route_table`` lists the app's API routes. Above ``portal`` and
``api``: it assembles both; only ``cli`` imports it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.platform.app import create_api_app, create_app

__all__ = ["create_api_app", "create_app"]


def __getattr__(name: str) -> Any:
    # Imported when first asked for: the monitor process (``monitor_process``) runs from
    # this package without the app (a second of imports and their memory).
    if name in __all__:
        from loopml.platform import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
