"""SQL transforms as the rest of loopml sees them: definitions, runs and lineage.

A transform is a named ``SELECT`` over a project's lake tables that materializes into a
table (``into_table``), replacing it (``overwrite``) or adding to it (``append``). Each
application is a ``TransformRun`` that records the exact table versions it read and the
version it wrote, so any table version a transform made can be traced back to its inputs.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from loopml.core.contracts import REJECTED_SUFFIX
from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.lake import TABLE_NAME_PATTERN, WriteMode, validate_table_name

TRANSFORM_NAME_PATTERN = TABLE_NAME_PATTERN
RESERVED_NAMES = frozenset({"lineage"})
"""Names a transform may not take: ``GET .../transforms/lineage`` is the lineage route."""

MAX_SQL_CHARS = 100_000
MAX_DESCRIPTION = 4000
TABLE_VERSION_PATTERN = re.compile(r"^([a-z][a-z0-9_]{0,62})(?:@([0-9]{1,9}))?$")


def validate_transform_name(name: str) -> str:
    """Return ``name`` if it is a valid transform name, else raise ``ValidationError``.

    Transform names follow the table-name rule (a lowercase letter, then up to 62 lowercase
    letters, digits or ``_``), and may not be ``lineage``.
    """
    if not isinstance(name, str) or not TRANSFORM_NAME_PATTERN.fullmatch(name):
        shown = repr(name)[:80]
        raise ValidationError(
            f"invalid transform name {shown}: expected a lowercase letter followed by up to 62 "
            "lowercase letters, digits or '_' (for example 'daily_sales')",
            details={"field": "name", "pattern": TRANSFORM_NAME_PATTERN.pattern},
        )
    if name in RESERVED_NAMES:
        raise ValidationError(
            f"transform name {name!r} is reserved: choose another name",
            details={"field": "name", "reserved": sorted(RESERVED_NAMES)},
        )
    return name


def validate_output_table(name: str) -> str:
    """Return ``name`` if a transform may write into it, else raise ``ValidationError``.

    A valid table name that is not a quarantine table (``<table>__rejected``): those hold
    the rows a contract refused, and only ingest writes them.
    """
    validate_table_name(name)
    if name.endswith(REJECTED_SUFFIX):
        raise ValidationError(
            f"a transform cannot write into {name!r}: tables ending in {REJECTED_SUFFIX!r} "
            "hold the rows a validation contract quarantined; choose another table",
            details={"field": "into", "refused": name},
        )
    return name


def validate_sql_text(sql: str) -> str:
    """Return ``sql`` if it is non-blank text of at most ``MAX_SQL_CHARS`` characters.

    This checks the size only; the warehouse's sandbox checks what the query does.
    """
    if not isinstance(sql, str) or not sql.strip() or len(sql) > MAX_SQL_CHARS:
        size = len(sql) if isinstance(sql, str) else type(sql).__name__
        raise ValidationError(
            f"expected the transform's SQL: one SELECT of 1 to {MAX_SQL_CHARS} characters, "
            f"got {size}",
            details={"field": "sql", "max_length": MAX_SQL_CHARS},
        )
    return sql


def validate_description(description: str) -> str:
    """Return ``description`` if it is text of at most ``MAX_DESCRIPTION`` characters."""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise ValidationError(
            f"invalid description: expected text of at most {MAX_DESCRIPTION} characters",
            details={"field": "description", "max_length": MAX_DESCRIPTION},
        )
    return description


def parse_table_version(text: str) -> tuple[str, int | None]:
    """``("sales", 3)`` for ``"sales@3"``, ``("sales", None)`` for ``"sales"``.

    Raises:
        ValidationError: anything else.
    """
    found = TABLE_VERSION_PATTERN.fullmatch(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise ValidationError(
            f"invalid table reference {str(text)[:80]!r}: expected a table name, optionally "
            "with a version, such as 'sales' or 'sales@3'",
            details={"field": "table", "pattern": TABLE_VERSION_PATTERN.pattern},
        )
    version = found.group(2)
    return found.group(1), None if version is None else int(version)


class TableVersion(BaseModel):
    """One version of a lake table: what a transform run read or wrote."""

    model_config = ConfigDict(frozen=True)

    table: str
    version: int

    def __str__(self) -> str:
        return f"{self.table}@{self.version}"


class Transform(BaseModel):
    """A named SQL transform of a project.

    Attributes:
        sql: one ``SELECT`` over the project's tables (``sales``, ``sales@3``).
        into_table: the table it materializes into.
        mode: ``overwrite`` (replace the table's rows) or ``append``.
        revision: 1 at first, plus one for each change of ``sql``, ``into_table`` or
            ``mode`` (a new description keeps the revision).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    project: str
    name: str
    description: str
    sql: str
    into_table: str
    mode: WriteMode
    revision: int
    created_at: datetime
    updated_at: datetime


class TransformRun(BaseModel):
    """One application of a transform.

    Attributes:
        transform: the transform's name.
        revision: the definition's revision that ran.
        sql: the SQL that ran, as written.
        inputs: every table version the SQL read; a table named without a version was
            pinned to its version at the time, so this is exact.
        output_table: the table written.
        output_version: the table version the write made.
        rows: the rows written to ``output_table`` (a quarantine contract on it may have
            set some aside in ``<table>__rejected``).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    project: str
    transform: str
    revision: int
    sql: str
    inputs: list[TableVersion]
    output_table: str
    output_version: int
    rows: int
    actor: str
    created_at: datetime

    @property
    def output(self) -> TableVersion:
        """The table version this run wrote."""
        return TableVersion(table=self.output_table, version=self.output_version)


class TransformLineage(BaseModel):
    """Where a table version came from, walking back through the transforms that made it.

    Attributes:
        table: the table asked about.
        version: its version asked about (the current one when none was given).
        runs: the run that produced ``table@version`` first (none when no transform did),
            then the runs that produced its inputs, breadth first, each once.
        sources: the table versions read along the way that no transform produced (data
            that came in by ingest, or whose transform was deleted since), sorted;
            ``table@version`` itself when no run made it.
        truncated: the walk stopped at its limit of runs before reaching every source.
    """

    model_config = ConfigDict(frozen=True)

    table: str
    version: int
    runs: list[TransformRun]
    sources: list[TableVersion]
    truncated: bool = False


# A cursor carries the last run's time and id, so any well-formed one is a valid position
# (a deleted run's too): "<microseconds since the epoch>-<id>".
CURSOR_PATTERN = re.compile(r"^[0-9]{1,17}-[0-9a-f]{32}$")


def transform_not_found(project: str, name: str) -> NotFoundError:
    """The error for a transform the project does not have, with the command that defines one."""
    return NotFoundError(
        f"transform {name!r} not found in project {project!r}: define it with "
        "`loopml transforms apply NAME --sql ... --into TABLE`",
        details={"project": project, "transform": name},
    )
