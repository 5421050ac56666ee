"""API tokens through the API: your own, and any user's by prefix (platform admins)."""

from __future__ import annotations

import builtins

from loopml.client._http import Http, segment
from loopml.core.auth import DEFAULT_TOKEN_DAYS, ApiToken, parse_token_ref


class Tokens:
    """``client.tokens``: make, list and revoke your tokens; find and revoke anyone's by
    prefix (platform admins)."""

    def __init__(self, http: Http) -> None:
        self._http = http

    def create(
        self,
        name: str,
        *,
        project: str | None = None,
        role: str | None = None,
        resource: str | None = None,
        expires_in_days: int = DEFAULT_TOKEN_DAYS,
    ) -> ApiToken:
        """Make a token of the calling user; its ``token`` (the secret) is in this answer
        only.

        Args:
            project: the one project it acts in; ``None``: every project you have a role in.
            role: ``viewer``, ``editor`` or ``admin``, no higher than yours (default: yours).
            resource: narrow it to one resource (``deployment:churn-api``,
                ``experiment:churn``, ``table:events``, ``model:churn``); needs ``project``.
            expires_in_days: 1 to 365; every token expires.
        """
        body = {
            "name": name,
            "project": project,
            "role": role,
            "resource": resource,
            "expires_in_days": expires_in_days,
        }
        return ApiToken.model_validate(self._http.json("POST", "/api/v1/tokens", json=body))

    def list(self) -> builtins.list[ApiToken]:
        """Your tokens, newest first, revoked and expired ones included (never secrets)."""
        data = self._http.json("GET", "/api/v1/tokens")
        return [ApiToken.model_validate(item) for item in data["items"]]

    def revoke(self, token: str) -> None:
        """Revoke one of your tokens, by its id or its prefix (``lm_3f9a1c2b``, or the whole
        token, of which only the prefix is sent)."""
        self._http.request("DELETE", f"/api/v1/tokens/{segment(_ref(token))}")

    def find(self, prefix: str) -> ApiToken:
        """Any user's token by its prefix (platform admins): whose it is, its scope, expiry,
        last use and revocation. A whole token may be given: only its prefix is sent."""
        return ApiToken.model_validate(self._http.json("GET", _admin(prefix)))

    def revoke_any(self, prefix: str) -> None:
        """Revoke any user's token by its prefix (platform admins), such as one found in a
        log. A whole token may be given: only its prefix is sent."""
        self._http.request("DELETE", _admin(prefix))


def _ref(token: str) -> str:
    # Never send a secret in a URL: a whole token is reduced to its prefix here.
    return parse_token_ref(token.strip())[1]


def _admin(prefix: str) -> str:
    return f"/api/v1/admin/tokens/{segment(_ref(prefix))}"
