"""Request and response bodies of the API (the domain objects of ``core.types`` are reused)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from loopml.core.logs import LEVELS, MAX_GREP, LogQuery
from loopml.core.names import PROJECT_NAME_PATTERN

# The rule is enforced by loopml's own validators (their messages say how to fix a name);
# declaring it in the schema tells generated clients and fuzzers the same rule.
NAME_SCHEMA: dict[str, Any] = {"pattern": PROJECT_NAME_PATTERN.pattern}


def project_path(description: str = "A project name.") -> Any:
    """A ``{project}``-style path parameter, documented with the name rule."""
    return Path(description=description, max_length=63, json_schema_extra=NAME_SCHEMA)


def project_query(description: str) -> Any:
    """An optional project-name query parameter, documented with the name rule."""
    return Query(
        default=None, description=description, max_length=63, json_schema_extra=NAME_SCHEMA
    )


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def log_query(
    grep: str | None = Query(
        default=None,
        max_length=MAX_GREP,
        description="Only lines holding this text (any case).",
    ),
    level: str | None = Query(
        default=None,
        description="Only lines at this level or above: " + ", ".join(LEVELS) + ". A line "
        "without a level word continues the one before it; lines before any have none "
        "and are left out.",
        json_schema_extra={"enum": list(LEVELS)},
    ),
) -> LogQuery:
    """The ``grep`` and ``level`` query parameters of a log route, as one query (a
    dependency: an unknown level or a long text answers 422)."""
    return LogQuery(grep=grep or None, level=level.lower() if level else None)


MAX_LOG_LINES = 1000


def tail_query() -> Any:
    """The ``tail`` query parameter of a log route."""
    return Query(default=100, ge=1, le=MAX_LOG_LINES, description="How many last lines.")


class LogLines(BaseModel):
    """The last lines of a log that a search kept, oldest first."""

    lines: list[str]


def _iso_8601_only(value: Any) -> Any:
    # pydantic would also read a bare number as a Unix timestamp; the API promises ISO 8601.
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("expected an ISO 8601 time such as 2026-11-21T08:00:00Z")
    return value


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_8601_only)]
"""A datetime given as ISO 8601 text (a date alone means its midnight, UTC if no zone)."""


class ErrorDetail(BaseModel):
    """What went wrong: a stable code, a message that says how to fix it, and context."""

    code: str = Field(description="Stable, machine-readable kind, such as 'not_found'.")
    message: str
    details: dict[str, Any]


class ErrorBody(BaseModel):
    """The one body of every error answer."""

    error: ErrorDetail


_ERROR_STATUSES = {
    400: "Malformed request, or an artifact key refused (`invalid_path`).",
    401: "No token, or one that is malformed, unknown, expired or revoked (auth on).",
    403: "Not allowed: a cross-site request, or a role too low (auth on).",
    404: "No such project, artifact or route.",
    409: "Conflicts with the current state (`already_exists`, `conflict`).",
    413: "Body larger than the configured limit.",
    415: "Body of a media type this route does not accept.",
    422: "A field failed validation.",
    429: "Too many failed logins or token checks from this address; retry later.",
    503: "The database or object store is unreachable; retry.",
    507: "The disk holding the data is full (`disk_full`): nothing was written; free space.",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in _ERROR_STATUSES.items()
}
"""Every router documents these answers (see platform/errors.py for how they are made)."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectCreate(_Request):
    """Body of ``POST /api/v1/projects``."""

    name: str = Field(
        max_length=63,
        description="Lowercase letters, digits, '_' or '-'.",
        json_schema_extra=NAME_SCHEMA,
    )
    description: str = Field(default="", max_length=4000)


class ProjectUpdate(_Request):
    """Body of ``PATCH /api/v1/projects/{name}``."""

    description: str = Field(max_length=4000)


class HealthReport(BaseModel):
    """Liveness and readiness of the server."""

    status: str = Field(description="'ok' when ready, 'unavailable' otherwise.")
    version: str
    checks: dict[str, str]
