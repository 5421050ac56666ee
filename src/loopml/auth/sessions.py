"""Browser sessions: the cookie a page logs in with, and the CSRF token bound to it.

A session is an ordinary login token (``service.login``, named ``session``, with the short
lifetime ``auth.session_hours``) carried in an ``HttpOnly`` cookie instead of an
``Authorization`` header, so a page's scripts never see it. A browser attaches cookies to
requests that other sites make it send, so every state change made with the cookie must
also carry ``X-CSRF-Token``: the HMAC-SHA256 of the session token under the install's
secret. A page on loopml's origin reads it from the login's answer or from the readable
``loopml_csrf`` cookie; a page on another origin can do neither, and cannot set the header
on a request to loopml without a CORS preflight, which loopml never grants.

The token is derived, not stored: nothing to keep per session and nothing to clean up; it
changes with every login and dies with its session (revocation, expiry). The HMAC input is
prefixed, so the CSRF token never equals the token's stored hash (``tokens.token_hash``),
which someone holding the database has.
"""

from __future__ import annotations

import hashlib
import hmac

SESSION_COOKIE = "loopml_session"
CSRF_COOKIE = "loopml_csrf"
CSRF_HEADER = "X-CSRF-Token"
_CSRF_CONTEXT = b"loopml-csrf-v1:"


def csrf_token(key: bytes, session_token: str) -> str:
    """The CSRF token of ``session_token``: HMAC-SHA256 under the install's secret, as hex."""
    return hmac.new(key, _CSRF_CONTEXT + session_token.encode(), hashlib.sha256).hexdigest()


def csrf_matches(key: bytes, session_token: str, given: str | None) -> bool:
    """Whether ``given`` is the CSRF token of ``session_token`` (constant-time)."""
    if not given:
        return False
    # As bytes: compare_digest refuses a str holding non-ASCII, which a header may.
    expected = csrf_token(key, session_token).encode()
    return hmac.compare_digest(expected, given.strip().encode("utf-8", "replace"))
