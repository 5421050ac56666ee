"""Bodies, answers and path parameters of the codeset routes."""

from __future__ import annotations

from typing import Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from loopml.core.codesets import (
    CODESET_ID_PATTERN,
    CODESET_NAME_PATTERN,
    MAX_BRANCH_CHARS,
    Codeset,
    CodesetVersion,
)


def codeset_path() -> Any:
    """The ``{name}`` path parameter of a codeset."""
    return Path(
        description="A codeset name: a lowercase letter, then lowercase letters, digits, '_' "
        "or '-'.",
        max_length=63,
        json_schema_extra={"pattern": CODESET_NAME_PATTERN.pattern},
    )


def codeset_id_path() -> Any:
    """The ``{codeset_id}`` path parameter of the push webhook."""
    return Path(
        description="A codeset's id (32 lowercase hex characters).",
        min_length=32,
        max_length=32,
        pattern=CODESET_ID_PATTERN.pattern,
    )


class CodesetList(BaseModel):
    """A project's codesets, by name."""

    items: list[Codeset]


class CodesetVersionList(BaseModel):
    """A codeset's versions, newest first."""

    items: list[CodesetVersion]


class WebhookSet(BaseModel):
    """Body of ``PUT .../codesets/{name}/webhook``."""

    model_config = ConfigDict(extra="forbid")

    repository: str = Field(
        min_length=1,
        max_length=1000,
        description="A git repository on the server, under one of codesets.repository_roots.",
    )
    branch: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_BRANCH_CHARS,
        description="The branch to follow; pushes to others are skipped. Default: every branch.",
    )


class PushAnswer(BaseModel):
    """What a push did: `registered` (a new version), `unchanged` (that tree is already a
    version) or `skipped` (why in `skipped`)."""

    outcome: str
    codeset: str
    version: int | None = None
    commit: str | None = None
    skipped: str | None = None
