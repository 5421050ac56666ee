"""Request and response bodies of ``/api/v1/projects/{project}/transforms``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from loopml.core.lake import TABLE_NAME_PATTERN, WriteMode
from loopml.core.transforms import (
    MAX_DESCRIPTION,
    MAX_SQL_CHARS,
    TRANSFORM_NAME_PATTERN,
    Transform,
    TransformRun,
)
from loopml.data.warehouse import DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S

# The rule is enforced by loopml's own validator (its message says how to fix a name); the
# schema declares it for generated clients and fuzzers, on the string itself (not on an anyOf).
TableName = Annotated[
    str, Field(max_length=63, json_schema_extra={"pattern": TABLE_NAME_PATTERN.pattern})
]
_SQL = "One read-only SELECT over the project's tables (sales, or a past version sales@3)."
_INTO = "The table to write (created on the first apply); not a '<table>__rejected' table."
_MODE = "overwrite (replace the table's rows) or append; unchanged when omitted."
_DESCRIPTION = "What the transform makes; unchanged when omitted."


def transform_path() -> Any:
    """The ``{name}`` path parameter of a transform, documented with the name rule."""
    return Path(
        description="A transform name: a lowercase letter, then lowercase letters, digits "
        "or '_' ('lineage' is reserved).",
        max_length=63,
        json_schema_extra={"pattern": TRANSFORM_NAME_PATTERN.pattern},
    )


class TransformDefine(BaseModel):
    """Body of ``PUT .../transforms/{name}``: define or change a transform, without running it."""

    model_config = ConfigDict(extra="forbid")

    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARS, description=_SQL)
    into: TableName = Field(description=_INTO)
    mode: WriteMode | None = Field(default=None, description=_MODE)
    description: str | None = Field(
        default=None, max_length=MAX_DESCRIPTION, description=_DESCRIPTION
    )


class TransformApply(BaseModel):
    """Body of ``POST .../transforms/{name}/apply``: each field given changes the definition
    first (the first apply needs ``sql`` and ``into``); an empty body re-runs it as saved."""

    model_config = ConfigDict(extra="forbid")

    sql: str | None = Field(default=None, min_length=1, max_length=MAX_SQL_CHARS, description=_SQL)
    into: TableName | None = Field(default=None, description=_INTO)
    mode: WriteMode | None = Field(default=None, description=_MODE)
    description: str | None = Field(
        default=None, max_length=MAX_DESCRIPTION, description=_DESCRIPTION
    )
    timeout_s: float = Field(
        default=DEFAULT_TIMEOUT_S,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="The query is stopped after this many seconds (code 'query_timeout').",
    )


class TransformList(BaseModel):
    """A project's transforms, by name."""

    items: list[Transform]


class TransformRunPage(BaseModel):
    """A transform's runs, newest first; pass ``next_cursor`` for the next page."""

    items: list[TransformRun]
    next_cursor: str | None = None
