"""Lake tables as the rest of loopml sees them: names, columns, versions and commits.

A lake table is a Delta Lake table in the artifact store (``core.layout.lake_table_prefix``);
these types describe it without any I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from loopml.core.errors import ValidationError

PENDING_VERSION = -2
"""The version of a table's row while the ingest that creates it has not committed yet: the
row exists so that concurrent writers and idempotency keys find it, but the table does not
until its first version is recorded (issue 51). A pending row is never listed or read; one
whose writer died or was refused is cleaned up (``loopml.data.lake.sweep_pending``)."""

TABLE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
COLUMN_TYPE_PATTERN = (
    r"^(bool|u?int(8|16|32|64)|float|double|string|large_string|binary|large_binary"
    r"|date32|date64|timestamp\[(s|ms|us|ns)\])$"
)
"""The Arrow types a data contract may require of a column's values (by name, as
``pa.type_for_alias`` reads)."""
STORED_TYPE_PATTERN = r"^(bool|int(8|16|32|64)|float|double|string|binary|date32|timestamp\[us\])$"
"""The types a table's column may be declared with: those the lake keeps as declared."""
STORED_TYPES = (
    "bool, int8, int16, int32, int64, float, double, string, binary, date32, timestamp[us]"
)
_NOT_KEPT = {
    **{
        f"timestamp[{unit}]": ("timestamps in microseconds only", "timestamp[us]")
        for unit in ("s", "ms", "ns")
    },
    "uint8": ("no unsigned integers", "int16"),
    "uint16": ("no unsigned integers", "int32"),
    "uint32": ("no unsigned integers", "int64"),
    "uint64": ("no unsigned integers", "int64 (values up to 2**63 - 1) or string"),
    "large_string": ("one string type", "string"),
    "large_binary": ("one binary type", "binary"),
    "date64": ("dates as days (date32)", "date32"),
}
"""Arrow types Delta Lake would store as another type, and what to declare instead (a
declaration is refused rather than changed without a word)."""
COLUMN_DECLARATION_PATTERN = r"^[^\x00-\x1f\x7f]{1,255}:" + STORED_TYPE_PATTERN[1:]
"""``NAME:TYPE``, one declared column of an ingest (the last ``:`` splits them)."""

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
        replayed: an upload with the same ``Idempotency-Key`` had already landed: nothing
            was written, and this is the commit that holds it.
    """

    model_config = ConfigDict(frozen=True)

    version: int
    timestamp: datetime
    operation: str
    mode: str | None = None
    rows_added: int | None = None
    files_added: int | None = None
    warnings: list[str] = Field(default_factory=list)
    replayed: bool = False


def parse_declarations(declared: Iterable[str]) -> list[ColumnInfo]:
    """``NAME:TYPE`` declarations (``age:int64``) as columns, in their order.

    Raises:
        ValidationError: a declaration without ``:``, an unknown type, a name given twice.
    """
    columns = []
    for item in declared:
        name, sep, kind = str(item).rpartition(":")
        if not sep or not name:
            raise ValidationError(
                f"invalid column declaration {str(item)[:80]!r}: expected NAME:TYPE, such as "
                "'age:int64' or 'signup:timestamp[us]'",
                details={"field": "column", "pattern": COLUMN_DECLARATION_PATTERN},
            )
        columns.append(ColumnInfo(name=name, type=kind.strip()))
    return check_declared(columns)


def columns_from_document(data: Any) -> list[ColumnInfo]:
    """Declared columns from a YAML or JSON document: a mapping of name to type
    (``{age: int64}``), a list of ``{name, type}`` objects, or either under ``columns``.

    Raises:
        ValidationError: any other shape, an unknown type, a name given twice.
    """
    if isinstance(data, Mapping) and set(data) == {"columns"}:
        data = data["columns"]
    if isinstance(data, Mapping):
        pairs = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, list) and all(isinstance(i, Mapping) for i in data):
        pairs = [(str(i.get("name", "")), i.get("type")) for i in data]
    else:
        raise ValidationError(
            "a schema document is a mapping of column names to types ({age: int64}) or a "
            f"list of {{name, type}} objects, got {type(data).__name__}"
        )
    if not pairs:
        raise ValidationError("the schema declares no column")
    return parse_declarations(f"{name}:{kind}" for name, kind in pairs)


def check_declared(columns: list[ColumnInfo]) -> list[ColumnInfo]:
    """``columns`` if each has a name, a type of ``COLUMN_TYPE_PATTERN``, and a name of its
    own, else a ``ValidationError`` naming the first that does not."""
    seen: set[str] = set()
    for column in columns:
        if not 0 < len(column.name) <= 255 or re.search(r"[\x00-\x1f\x7f]", column.name):
            raise ValidationError(
                f"invalid column name {column.name[:40]!r}: expected 1 to 255 characters, "
                "none of them a control character",
                details={"column": column.name[:40]},
            )
        if column.type in _NOT_KEPT:
            holds, instead = _NOT_KEPT[column.type]
            raise ValidationError(
                f"column {column.name!r} is declared {column.type}, which the lake would not "
                f"keep (it holds {holds}): declare it {instead}; incoming values convert to "
                "it on write where they fit",
                details={"column": column.name, "type": column.type, "supported": STORED_TYPES},
            )
        if not re.fullmatch(STORED_TYPE_PATTERN, column.type):
            raise ValidationError(
                f"unknown column type {column.type[:40]!r} for {column.name!r}: expected one "
                f"of {STORED_TYPES}",
                details={"column": column.name, "type": column.type[:40]},
            )
        if column.name in seen:
            raise ValidationError(
                f"column {column.name!r} is declared twice; column names must be unique",
                details={"column": column.name},
            )
        seen.add(column.name)
    return columns
