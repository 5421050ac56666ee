"""The portal: server-rendered pages over the same capability services as the API (never
over its routes), with the API reference at ``/docs``; ``create_app`` is the platform's whole
app, the API's with the portal on it.

Above ``api``: besides its app factory it imports ``api.context``, ``api.authz`` and two of
``api.services`` (``sql``, ``monitoring``), never ``api.routes`` or ``api.mlflow`` (a contract
in pyproject.toml).
"""

from loopml.portal.app import create_app, install

__all__ = ["create_app", "install"]
