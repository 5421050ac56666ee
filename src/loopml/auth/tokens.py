"""API tokens: made here, shown once, stored as a public prefix and a keyed hash.

A token reads ``lm_<prefix>_<secret>``: the 8-character prefix is stored as is, so a token
found in a log can be looked up and revoked; the whole token is stored only as its
HMAC-SHA256 under the install's secret (``loopml.auth.install``), so the table alone, if it
leaks, does not let anyone check guesses. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX_LENGTH = 8
_TOKEN = re.compile(r"^lm_([a-z0-9]{8})_([A-Za-z0-9_-]{43})$")


def new_token() -> tuple[str, str]:
    """A fresh token and its prefix."""
    prefix = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
    return f"lm_{prefix}_{secrets.token_urlsafe(32)}", prefix


def prefix_of(token: str) -> str | None:
    """The prefix of a well-formed token, or ``None`` (then it cannot be valid)."""
    match = _TOKEN.fullmatch(token)
    return match.group(1) if match else None


def token_hash(key: bytes, token: str) -> str:
    """The stored form of ``token``: HMAC-SHA256 under the install's secret, as hex."""
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def matches(key: bytes, token: str, stored: str) -> bool:
    """Whether ``token`` is the one stored as ``stored`` (constant-time)."""
    return hmac.compare_digest(token_hash(key, token), stored)
