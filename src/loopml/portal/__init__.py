"""The portal: server-rendered pages over the same capability services as the API (never
over its routes), with the API reference at ``/docs``; ``install`` puts it on the app that
``loopml.platform.create_app`` builds.

It imports the capability services and ``loopml.faces`` (the app's context, the session
helpers), never ``loopml.api`` (a contract in pyproject.toml).
"""

from loopml.portal.mount import install

__all__ = ["install"]
