"""The thin layer over ``deltalake``: open, write and read history, with loopml's errors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import (
    CommitFailedError,
    DeltaError,
    SchemaMismatchError,
    TableNotFoundError,
)

from loopml.core.errors import (
    ConflictError,
    LoopmlError,
    NotFoundError,
    ServiceUnavailableError,
    ValidationError,
)
from loopml.core.lake import TableCommit
from loopml.storage.native import NativeLocation

COMMIT_ID_KEY = "loopml.commit"
_HISTORY_SCAN = 50


@contextmanager
def delta_errors(what: str) -> Iterator[None]:
    """Turn ``deltalake`` and object-store failures into loopml errors."""
    try:
        yield
    except LoopmlError:
        raise
    except CommitFailedError as exc:
        raise ConflictError(
            f"{what}: another writer committed a conflicting change; retry",
            details={"reason": str(exc)[:500]},
        ) from exc
    except SchemaMismatchError as exc:
        raise ValidationError(f"{what}: {exc}", details={"reason": str(exc)[:500]}) from exc
    except TableNotFoundError as exc:
        raise NotFoundError(f"{what}: the table has no data yet") from exc
    except (DeltaError, OSError) as exc:
        raise ServiceUnavailableError(
            f"{what}: the lake storage failed ({type(exc).__name__}); retry later",
            details={"reason": str(exc)[:500], "retryable": True},
        ) from exc


def open_table(loc: NativeLocation, version: int | None = None) -> DeltaTable | None:
    """The Delta table at ``loc`` (at ``version``), or ``None`` where none was committed."""
    with delta_errors("opening the table"):
        if not DeltaTable.is_deltatable(loc.uri, storage_options=loc.storage_options):
            return None
        return DeltaTable(loc.uri, version=version, storage_options=loc.storage_options)


def arrow_schema(dt: DeltaTable) -> pa.Schema:
    """A Delta table's schema as a pyarrow schema."""
    return pa.schema(dt.schema().to_arrow())


def create_empty(loc: NativeLocation, schema: pa.Schema) -> None:
    """Commit version 0 of an empty table with ``schema``."""
    with delta_errors("creating the table"):
        DeltaTable.create(loc.uri, schema=schema, storage_options=loc.storage_options)


def write(loc: NativeLocation, data: pa.RecordBatchReader, mode: str) -> str:
    """Write ``data`` as one Delta commit; returns the commit's id (see ``find_commit``).

    Delta's log makes the commit atomic: data files are written first and become part of
    the table only when ``_delta_log/<version>.json`` is created, so a writer killed
    half-way leaves unreferenced files, never a partial version.
    """
    commit_id = uuid.uuid4().hex
    with delta_errors("writing the table"):
        write_deltalake(
            loc.uri,
            data,
            mode="overwrite" if mode == "overwrite" else "append",
            schema_mode="overwrite" if mode == "overwrite" else None,
            storage_options=loc.storage_options,
            commit_properties=CommitProperties(custom_metadata={COMMIT_ID_KEY: commit_id}),
        )
    return commit_id


def _commit(entry: dict[str, Any]) -> TableCommit:
    params = entry.get("operationParameters") or {}
    metrics = entry.get("operationMetrics") or {}
    mode = params.get("mode") if isinstance(params, dict) else None
    mode_text = {"Append": "append", "Overwrite": "overwrite"}.get(str(mode)) if mode else None
    stamp = entry.get("timestamp")
    return TableCommit(
        version=int(entry.get("version", -1)),
        timestamp=datetime.fromtimestamp(int(stamp) / 1000, UTC) if stamp else datetime.now(UTC),
        operation=str(entry.get("operation", "")),
        mode=mode_text,
        rows_added=_int(metrics.get("num_added_rows")),
        files_added=_int(metrics.get("num_added_files")),
    )


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def history(dt: DeltaTable, limit: int | None = None) -> list[TableCommit]:
    """The table's commits, newest first."""
    with delta_errors("reading the table's history"):
        return [_commit(entry) for entry in dt.history(limit)]


def find_commit(dt: DeltaTable, commit_id: str) -> TableCommit:
    """The commit this process made under ``commit_id`` (others may have committed since)."""
    with delta_errors("reading the table's history"):
        for entry in dt.history(_HISTORY_SCAN):
            if entry.get(COMMIT_ID_KEY) == commit_id:
                return _commit(entry)
    raise ConflictError(
        f"the commit {commit_id} is not among the table's last {_HISTORY_SCAN} commits: "
        "too many concurrent writers; the data was written, check the table's history"
    )


def rows_since(dt: DeltaTable, version: int) -> int:
    """Rows added by the commits after ``version`` (for an event about commits found late)."""
    commits = history(dt, max(dt.version() - version, 1))
    return sum(c.rows_added or 0 for c in commits if c.version > version)
