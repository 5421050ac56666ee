"""The HTTP API: FastAPI app, one router per resource, services, the request guard."""

from loopml.api.app import create_app as create_app
