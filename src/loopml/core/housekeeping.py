"""What lake table housekeeping reports, without any I/O (shared by the data layer, the API
and the SDK), and how a run's input names a table version."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

MAX_RETENTION_HOURS = 87_600
TABLE_INPUT_KIND = "table"


def table_ref(project: str, table: str, version: int) -> str:
    """The run-input ``ref`` (kind ``table``) naming ``version`` of ``project``'s ``table``:
    ``<project>/<table>@<version>``. Vacuum keeps the files of every version so named."""
    return f"{project}/{table}@{version}"


class CompactReport(BaseModel):
    """What a compaction did: the table's files and bytes before and after."""

    model_config = ConfigDict(frozen=True)

    table: str
    version: int
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int


class VacuumReport(BaseModel):
    """What a vacuum freed (or, on a dry run, would free), and the referenced versions it
    kept."""

    model_config = ConfigDict(frozen=True)

    table: str
    version: int
    retention_hours: int
    dry_run: bool
    files_deleted: int
    bytes_freed: int
    kept_versions: list[int]


class PruneReport(BaseModel):
    """What a prune deleted: the rows whose ``column`` was before ``before``."""

    model_config = ConfigDict(frozen=True)

    table: str
    version: int
    column: str
    before: datetime
    rows_deleted: int
