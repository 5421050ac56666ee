"""The thin layer over ``deltalake``: open, write and read history, with loopml's errors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
from deltalake import (
    ColumnProperties,
    CommitProperties,
    DeltaTable,
    PostCommitHookProperties,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import (
    CommitFailedError,
    DeltaError,
    SchemaMismatchError,
    TableNotFoundError,
)
from pydantic import ValidationError as PydanticValidationError

from loopml.core.disk import disk_full, is_disk_full
from loopml.core.errors import (
    ConflictError,
    LoopmlError,
    NotFoundError,
    ServiceUnavailableError,
    ValidationError,
)
from loopml.core.ingest import IngestKey
from loopml.core.lake import TableCommit
from loopml.core.streams import StreamState
from loopml.data.parquet_files import ROW_GROUP_ROWS, plain_columns
from loopml.storage.native import NativeLocation, free_bytes

COMMIT_ID_KEY = "loopml.commit"
INGEST_KEYS_KEY = "loopml.ingest_keys"
"""The commit's idempotency keys, ``[[key, body_sha256, rows], ...]`` as JSON text."""
STREAM_KEY = "loopml.stream"
"""The state of the stream whose messages the commit holds (``StreamState`` as JSON text)."""
_HISTORY_SCAN = 50
AFTER_COMMIT = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)
"""After each commit, a checkpoint every ``delta.checkpointInterval`` commits (100 unless the
table says otherwise), so that opening a table fed by many small commits reads one Parquet
checkpoint and a few JSON entries instead of every entry; and no expired-log cleanup, which
would delete log entries by age alone (``delta.logRetentionDuration``) and so make versions
that a run or a dataset snapshot references unreadable, whatever vacuum keeps for them."""
WRITER = WriterProperties(max_row_group_size=ROW_GROUP_ROWS, compression="SNAPPY")
"""The writer's settings when ``writer_for`` has no reason to change them (Snappy, as the
default; 256 Ki rows a row group: see ``parquet_files.ROW_GROUP_ROWS``)."""
_PLAIN = ColumnProperties(dictionary_enabled=False)


def writer_for(sample: pa.RecordBatch | None) -> WriterProperties:
    """``WRITER``, with dictionary encoding off for the columns whose values mostly differ
    in ``sample`` (the write's first rows): see ``parquet_files.plain_columns``."""
    plain = plain_columns(sample)
    if not plain:
        return WRITER
    return WriterProperties(
        max_row_group_size=ROW_GROUP_ROWS,
        compression="SNAPPY",
        column_properties=dict.fromkeys(plain, _PLAIN),
    )


MIN_FREE_BYTES = 1024 * 1024
"""A local lake write is refused up front below this much free space: the Rust writer
panics (a traceback on stderr) when the disk fills under it."""


def ensure_space(loc: NativeLocation, name: str | None = None) -> None:
    """Refuse a write to the local table at ``loc`` (``name``: ``project/table``, for the
    message) when its disk is (all but) full.

    Raises:
        DiskFullError: less than ``MIN_FREE_BYTES`` free.
    """
    free = free_bytes(loc)
    if free is not None and free < MIN_FREE_BYTES:
        raise disk_full(f"{_the_table(name)}'s new version", loc.uri, store="lake")


def _the_table(name: str | None) -> str:
    return "the table" if name is None else f"table {name}"


@contextmanager
def delta_errors(
    what: str, loc: NativeLocation | None = None, name: str | None = None
) -> Iterator[None]:
    """Turn ``deltalake`` and object-store failures into loopml errors; a full disk names
    ``loc`` and the table's ``name`` (``project/table``)."""
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
        if is_disk_full(exc):
            where = loc.uri if loc is not None else "the lake"
            change = f"{_the_table(name)}'s change ({what})"
            raise disk_full(change, where, store="lake") from exc
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


def refresh(dt: DeltaTable) -> None:
    """Bring an open table up to its latest version, reading only the newer log entries."""
    with delta_errors("reading the table"):
        dt.update_incremental()


def arrow_schema(dt: DeltaTable) -> pa.Schema:
    """A Delta table's schema as a pyarrow schema."""
    return pa.schema(dt.schema().to_arrow())


def create_empty(loc: NativeLocation, schema: pa.Schema, name: str | None = None) -> None:
    """Commit version 0 of an empty table with ``schema`` (``name``: ``project/table``)."""
    ensure_space(loc, name)
    with delta_errors("creating the table", loc, name):
        DeltaTable.create(loc.uri, schema=schema, storage_options=loc.storage_options)


def write(
    loc: NativeLocation,
    data: pa.RecordBatchReader,
    mode: str,
    *,
    metadata: Mapping[str, str] | None = None,
    table: DeltaTable | None = None,
    sample: pa.RecordBatch | None = None,
    name: str | None = None,
) -> str:
    """Write ``data`` as one Delta commit; returns the commit's id (see ``find_commit``).

    Delta's log makes the commit atomic: data files are written first and become part of
    the table only when ``_delta_log/<version>.json`` is created, so a writer killed
    half-way leaves unreferenced files, never a partial version.

    Args:
        metadata: more entries for the commit's ``commitInfo`` (see ``keys_metadata``).
        table: the open table at ``loc``, written through (which saves reading its log
            again) and left at the new version.
        sample: the data's first batch, which picks the columns' encodings (``writer_for``).
        name: ``project/table``, which a full disk's message names.
    """
    commit_id = uuid.uuid4().hex
    ensure_space(loc, name)
    with delta_errors("writing the table", loc, name):
        write_deltalake(
            loc.uri if table is None else table,
            data,
            mode="overwrite" if mode == "overwrite" else "append",
            schema_mode="overwrite" if mode == "overwrite" else None,
            storage_options=loc.storage_options if table is None else None,
            commit_properties=CommitProperties(
                custom_metadata={**(metadata or {}), COMMIT_ID_KEY: commit_id}
            ),
            post_commithook_properties=AFTER_COMMIT,
            writer_properties=writer_for(sample),
        )
    return commit_id


def keys_metadata(keys: Sequence[IngestKey]) -> dict[str, str]:
    """The ``commitInfo`` entry that makes a commit carry its posts' idempotency keys."""
    if not keys:
        return {}
    return {INGEST_KEYS_KEY: orjson.dumps([[k.key, k.body_sha256, k.rows] for k in keys]).decode()}


def keys_of(entry: Mapping[str, Any]) -> list[IngestKey]:
    """The idempotency keys a history entry carries, with its version (none if malformed)."""
    text = entry.get(INGEST_KEYS_KEY)
    if not isinstance(text, str):
        return []
    version = int(entry.get("version", -1))
    try:
        return [
            IngestKey(key=str(k), body_sha256=str(sha), rows=int(rows), version=version)
            for k, sha, rows in orjson.loads(text)
        ]
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return []


def stream_metadata(state: StreamState) -> dict[str, str]:
    """The ``commitInfo`` entry that makes a commit carry its stream's committed ids."""
    return {STREAM_KEY: state.model_dump_json()}


def stream_state_of(entry: Mapping[str, Any]) -> StreamState | None:
    """The stream state a history entry carries (``None`` if none or malformed)."""
    text = entry.get(STREAM_KEY)
    if not isinstance(text, str):
        return None
    try:
        return StreamState.model_validate_json(text)
    except PydanticValidationError:
        return None


def commit_of(entry: Mapping[str, Any]) -> TableCommit:
    """The ``TableCommit`` of a raw history entry."""
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
        return [commit_of(entry) for entry in dt.history(limit)]


def entries_since(dt: DeltaTable, version: int) -> list[dict[str, Any]]:
    """The raw history entries (``commitInfo``) of the commits after ``version``, newest
    first."""
    if dt.version() <= version:
        return []
    with delta_errors("reading the table's history"):
        entries = dt.history(dt.version() - version)
    return [e for e in entries if int(e.get("version", -1)) > version]


def find_commit(
    dt: DeltaTable, commit_id: str, entries: Sequence[Mapping[str, Any]] = ()
) -> TableCommit:
    """The commit this process made under ``commit_id`` (others may have committed since);
    looked for in ``entries`` first, then in the table's recent history."""
    for entry in entries:
        if entry.get(COMMIT_ID_KEY) == commit_id:
            return commit_of(entry)
    with delta_errors("reading the table's history"):
        for entry in dt.history(_HISTORY_SCAN):
            if entry.get(COMMIT_ID_KEY) == commit_id:
                return commit_of(entry)
    raise ConflictError(
        f"the commit {commit_id} is not among the table's last {_HISTORY_SCAN} commits: "
        "too many concurrent writers; the data was written, check the table's history"
    )
