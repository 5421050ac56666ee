"""The running platform as a program: the app factory that puts the API and the portal on
one app (``app``), what the server starts beside its routes (``startup``), route warm-up
(``warm``), the gateway processes' back-channel (``gateway_link``), serving auth
(``serving_auth``) and the embedded monitor (``monitoring``). Above ``portal`` and ``api``:
it assembles both; only ``cli`` imports it."""

from loopml.platform.app import create_api_app, create_app

__all__ = ["create_api_app", "create_app"]
