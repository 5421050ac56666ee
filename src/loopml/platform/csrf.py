"""The cross-site guard: a web page the user visits cannot change loopml's state.

loopml on loopback has no login by default, so the browser's own rules are what keep another
site (or a ``file://`` page, or a sandboxed frame) from driving it. A browser can send a
state-changing request to another origin without asking first (no CORS preflight) only as a
"simple" request: a form content type (``text/plain``, ``application/x-www-form-urlencoded``,
``multipart/form-data``) or no body. So on ``POST``, ``PUT``, ``PATCH`` and ``DELETE``:

- an ``Origin`` that is not this server's own origin (its ``Host``, port included) or one of
  ``server.allowed_origins`` is refused, and so is ``Origin: null`` (what sandboxed frames and
  ``file://`` pages send): a page on another port of the same machine is another origin;
- ``Sec-Fetch-Site: cross-site`` or ``same-site`` (sent by current browsers even where
  ``Origin`` is not) is refused unless the ``Origin`` is an allowed one;
- on ``POST``, a form content type is refused unless the request carries an
  ``Authorization`` or an ``X-CSRF-Token`` header, which no form and no simple request can
  set (with authentication on, the token, or the browser session's CSRF token, is then
  checked by ``faces/authz.py``). So a form posted with the session cookie alone is refused
  here, and a page's own ``fetch`` of a multipart upload passes with its CSRF token.
  ``PUT``, ``PATCH`` and ``DELETE`` are never
  simple requests: a browser always asks first (a preflight loopml never grants) and always
  sends ``Origin``, so the checks above cover them; clients such as MLflow's, which upload a
  ``.txt`` artifact with ``PUT`` and ``Content-Type: text/plain``, pass.
- the portal's own forms (``form_route``: its pages, which read and check a hidden CSRF field
  themselves) may post a form body, but only with an ``Origin`` that is this server's own or
  an allowed one: every current browser sends ``Origin`` on a form ``POST``.

Every refusal is a 403 with the stable error body, before the application reads the body.
Reads (``GET``) stay under the browser's same-origin policy: loopml sends no CORS headers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from loopml.core.errors import PermissionDeniedError
from loopml.platform.guard import send_error

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
# Headers a page can put on a cross-origin request only after a preflight loopml never grants.
_NON_SIMPLE_HEADERS = frozenset({"authorization", "x-csrf-token"})


def _origin_key(origin: str) -> str | None:
    """``scheme://host:port`` with the default port spelled out; ``None`` if not a URL."""
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port or _DEFAULT_PORTS[parts.scheme]}"


def _refuse(message: str, reason: str) -> PermissionDeniedError:
    return PermissionDeniedError(
        f"{message}; loopml refuses state changes from other sites (CSRF). Call it from the "
        "CLI or SDK, or add the page's origin to server.allowed_origins",
        details={"reason": reason},
    )


class CrossSiteGuardMiddleware:
    """Pure ASGI middleware enforcing the rules in the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        allowed_origins: Iterable[str] = (),
        form_route: Callable[[str], bool] = lambda path: False,
    ) -> None:
        self.app = app
        self.allowed = frozenset(k for k in map(_origin_key, allowed_origins) if k)
        self.form_route = form_route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING:
            error = self.check(scope)
            if error is not None:
                await send_error(send, error, scope["path"])
                return
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> PermissionDeniedError | None:
        """The refusal for this state-changing request, or ``None`` when it may go on."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        origin_ok = False
        if origin is not None:
            if origin.strip().lower() == "null":
                return _refuse(
                    "a request with Origin: null (a sandboxed or file:// page)", "null_origin"
                )
            key = _origin_key(origin)
            origin_ok = key is not None and (
                key in self.allowed or key == self._own(scope, headers)
            )
            if not origin_ok:
                return _refuse(f"a request from origin {origin[:100]!r}", "cross_origin")
        site = headers.get("sec-fetch-site", "").lower()
        if site in ("cross-site", "same-site") and not origin_ok:
            return _refuse(f"a {site} browser request", "cross_site")
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        simple = scope["method"] == "POST"
        if origin_ok and self.form_route(scope["path"]):
            return None  # the page checks its form's own CSRF field
        if simple and content_type in FORM_TYPES and not _NON_SIMPLE_HEADERS & headers.keys():
            return _refuse(
                f"a form-style body ({content_type}) without an Authorization or X-CSRF-Token "
                "header",
                "form_content_type",
            )
        return None

    @staticmethod
    def _own(scope: Scope, headers: dict[str, str]) -> str | None:
        host = headers.get("host")
        if not host:
            return None
        return _origin_key(f"{scope.get('scheme', 'http')}://{host}")
