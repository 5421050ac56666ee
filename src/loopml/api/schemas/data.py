"""Request and response bodies of the data routes (lake tables and file ingest)."""

from __future__ import annotations

from typing import Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from loopml.core.contracts import ValidationReport
from loopml.core.lake import (
    STORED_TYPE_PATTERN,
    TABLE_NAME_PATTERN,
    ColumnInfo,
    LakeTable,
    TableCommit,
)


def table_path() -> Any:
    """The ``{table}`` path parameter, documented with the name rule."""
    return Path(
        description="A table name: a lowercase letter, then lowercase letters, digits or '_'.",
        max_length=63,
        json_schema_extra={"pattern": TABLE_NAME_PATTERN.pattern},
    )


class ColumnSpec(BaseModel):
    """A column of a table created before its first ingest."""

    model_config = ConfigDict(extra="forbid")

    # Control characters (NUL above all) never reach the lake: Arrow's C code cut a name at
    # NUL, so "a\u0000b" was stored as "a".
    name: str = Field(
        min_length=1,
        max_length=255,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="The column name; no control characters (NUL included).",
    )
    type: str = Field(
        max_length=64,
        description="An Arrow type the lake stores as declared: int64, double, string, "
        "timestamp[us], ...",
        json_schema_extra={"pattern": STORED_TYPE_PATTERN},
    )
    # Strict: the schema says boolean, so 0/1 or "true" are refused rather than coerced.
    nullable: StrictBool = True


class TableCreate(BaseModel):
    """Create a table; with ``columns`` it starts at version 0 with that schema."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=63, json_schema_extra={"pattern": TABLE_NAME_PATTERN.pattern})
    description: str = Field(default="", max_length=4000)
    columns: list[ColumnSpec] | None = Field(default=None, max_length=1000)

    def column_infos(self) -> list[ColumnInfo] | None:
        """The columns as domain objects."""
        if self.columns is None:
            return None
        return [ColumnInfo(name=c.name, type=c.type, nullable=c.nullable) for c in self.columns]


class TableList(BaseModel):
    """A project's tables, by name."""

    items: list[LakeTable]


class TableHistory(BaseModel):
    """A table's commits, newest first."""

    items: list[TableCommit]


class TableHead(BaseModel):
    """The first rows of a table; values as JSON (times as ISO 8601, bytes as text)."""

    columns: list[ColumnInfo]
    rows: list[dict[str, Any]]


class ReportPage(BaseModel):
    """A table's validation reports, newest first; pass ``next_cursor`` for the next page."""

    items: list[ValidationReport]
    next_cursor: str | None = None
