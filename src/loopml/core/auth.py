"""Users, roles, API tokens and who is calling: the domain of authentication.

Roles are ordered: ``viewer`` reads, ``editor`` also writes, ``admin`` also deletes and
manages a project's members. A platform admin is admin of every project and manages users.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from loopml.core.errors import ValidationError

USER_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9._-]{0,62}$")
# The resource a token may be narrowed to: ``deployment:churn-api``, ``table:events``, ...
RESOURCE_PATTERN = re.compile(r"^(deployment|experiment|table|model):[A-Za-z0-9][\w.-]{0,127}$")
TOKEN_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
# A token's public prefix, alone or as a token starts (``lm_3f9a1c2b``, ``lm_3f9a1c2b_...``).
TOKEN_PREFIX_PATTERN = re.compile(r"^(?:lm_)?([a-z0-9]{8})(?:_[A-Za-z0-9_-]*)?$")
DEFAULT_TOKEN_DAYS = 30
MAX_TOKEN_DAYS = 365
SERVER_USER = "loopml-server"
"""The user a server's own background work acts as through its API (the embedded worker's
``deploy`` step): a platform admin whose password is random and never shown; not counted
among the people who administer the platform."""


class Role(enum.IntEnum):
    """A role in a project; a higher value may do everything a lower one may."""

    VIEWER = 1
    EDITOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        """``viewer``, ``editor`` or ``admin``.

        Raises:
            ValidationError: any other text.
        """
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValidationError(
                f"unknown role {text[:40]!r}: expected viewer, editor or admin",
                details={"field": "role"},
            ) from None

    @property
    def label(self) -> str:
        """The role's name as the API writes it."""
        return self.name.lower()


def validate_user_name(name: str) -> str:
    """Return ``name`` if it is a valid user name, else raise ``ValidationError``."""
    if not USER_NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            f"invalid user name {name[:70]!r}: a lowercase letter, then up to 62 lowercase "
            "letters, digits, '.', '_' or '-'",
            details={"field": "name"},
        )
    return name


def validate_resource(resource: str) -> str:
    """Return ``resource`` (``kind:name``) if valid, else raise ``ValidationError``."""
    if not RESOURCE_PATTERN.fullmatch(resource):
        raise ValidationError(
            f"invalid resource {resource[:140]!r}: expected deployment:<name>, "
            "experiment:<name>, table:<name> or model:<name>",
            details={"field": "resource"},
        )
    return resource


def parse_token_ref(text: str) -> tuple[Literal["id", "prefix"], str]:
    """Which token ``text`` names: ``("id", <32 hex>)``, or ``("prefix", <8 characters>)``
    for a prefix written alone, with ``lm_``, or as the start of a whole token (one found in
    a log: only its prefix is kept).

    Raises:
        ValidationError: neither an id nor a prefix.
    """
    if TOKEN_ID_PATTERN.fullmatch(text):
        return "id", text
    match = TOKEN_PREFIX_PATTERN.fullmatch(text)
    if match is None:
        # Never echo more than a prefix's worth: the text may be a mistyped whole token.
        shown = text if len(text) <= 12 else text[:12] + "..."
        raise ValidationError(
            f"{shown!r} names no token: expected a token's id (32 hex characters) or its "
            "prefix (8 characters, as in lm_3f9a1c2b)",
            details={"field": "token"},
        )
    return "prefix", match.group(1)


class User(BaseModel):
    """A person (or a service account) who can log in."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    platform_admin: bool
    disabled: bool
    created_at: datetime


class Membership(BaseModel):
    """A user's role in one project."""

    model_config = ConfigDict(frozen=True)

    user: str
    project: str
    role: str


class ApiToken(BaseModel):
    """An API token as listed: never its secret, which is shown once at creation.

    Attributes:
        prefix: the token's public start (``lm_3f9a1c2b``), to find a leaked one in logs.
        project: the one project it acts in, or ``None`` for every project of its user.
        role: the most it may do (never more than its user may).
        resource: the one resource it is narrowed to (``deployment:churn-api``), if any.
        token: the whole token; only in the answer that created it.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    user: str
    prefix: str
    project: str | None
    role: str
    resource: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime
    token: str | None = None


class Principal(BaseModel):
    """Who is calling, once a token is checked: what the permission check reads.

    Attributes:
        user: the user's name.
        token_id: the token used (recorded as the actor of events).
        platform_admin: a platform admin of a token without a project scope.
        roles: the caller's role in each project it may see (already capped by the token).
        project: the token's project scope, if any.
        resource: the token's resource narrowing, if any.
    """

    model_config = ConfigDict(frozen=True)

    user: str
    token_id: str | None
    platform_admin: bool
    roles: dict[str, int]
    project: str | None = None
    resource: str | None = None

    @property
    def actor(self) -> str:
        """How events name this caller: ``user:ada`` or ``user:ada/token:<id>``."""
        if self.token_id is None:
            return f"user:{self.user}"
        return f"user:{self.user}/token:{self.token_id}"
