"""Lake tables as the rest of loopml sees them: names, columns, versions and commits.

A lake table is a Delta Lake table in the artifact store (``core.layout.lake_table_prefix``);
these types describe it without any I/O.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from loopml.core.errors import ValidationError

TABLE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
COLUMN_TYPE_PATTERN = (
    r"^(bool|u?int(8|16|32|64)|float|double|string|large_string|binary|large_binary"
    r"|date32|date64|timestamp\[(s|ms|us|ns)\])$"
)
"""The Arrow types a column may be declared with (by name, as ``pa.type_for_alias`` reads)."""

WriteMode = Literal["append", "overwrite"]
WRITE_MODES: tuple[WriteMode, ...] = ("append", "overwrite")


def validate_table_name(name: str) -> str:
    """Return ``name`` if it is a valid table name, else raise ``ValidationError``.

    A table name starts with a lowercase letter, then up to 62 lowercase letters, digits or
    ``_``: it must be a plain SQL identifier, because the warehouse queries tables by name.
    """
    if not isinstance(name, str) or not TABLE_NAME_PATTERN.fullmatch(name):
        shown = repr(name)[:80]
        raise ValidationError(
            f"invalid table name {shown}: expected a lowercase letter followed by up to 62 "
            "lowercase letters, digits or '_' (for example 'customers_2024')",
            details={"field": "table", "pattern": TABLE_NAME_PATTERN.pattern},
        )
    return name


def validate_write_mode(mode: str) -> WriteMode:
    """Return ``mode`` if it is ``append`` or ``overwrite``, else raise ``ValidationError``."""
    for valid in WRITE_MODES:
        if mode == valid:
            return valid
    raise ValidationError(
        f"invalid write mode {str(mode)[:40]!r}: expected 'append' or 'overwrite'",
        details={"field": "mode", "valid": list(WRITE_MODES)},
    )


class ColumnInfo(BaseModel):
    """One column of a table.

    Attributes:
        name: the column name.
        type: its Arrow type as text (``int64``, ``double``, ``string``, ``timestamp[us]``).
        nullable: whether it may hold nulls.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    type: str
    nullable: bool = True


class LakeTable(BaseModel):
    """A table of a project's lake, as its metadata row records it.

    ``version`` is -1 until the first commit; ``row_count`` and ``columns`` are those of
    ``version``.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    project: str
    name: str
    description: str
    version: int
    row_count: int
    columns: list[ColumnInfo]
    contract: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime


class TableCommit(BaseModel):
    """One commit of a table's Delta log (an entry of its history).

    Attributes:
        version: the table version this commit made.
        timestamp: when it was committed, UTC.
        operation: Delta's name for it (``WRITE``, ``CREATE TABLE``, ``DELETE``, ...).
        mode: ``append`` or ``overwrite`` where it was a write, else ``None``.
        rows_added: rows the commit added, where the log records it.
        files_added: data files the commit added, where the log records it.
        warnings: what the write did that the writer may not have meant (a new column
            stored as text because a few of its values are not numbers), with the rows.
    """

    model_config = ConfigDict(frozen=True)

    version: int
    timestamp: datetime
    operation: str
    mode: str | None = None
    rows_added: int | None = None
    files_added: int | None = None
    warnings: list[str] = Field(default_factory=list)
