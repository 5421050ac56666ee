"""Lake tables: Delta Lake tables in the artifact store, with their rows in the metadata DB.

The Delta log is the truth; the metadata row caches its version, row count and columns.
A commit writes the log first, then records the row and its ``table.appended`` event in one
transaction. If the process dies in between, the next ``get_table`` or ingest finds the log
ahead of the row and reconciles it (RELIABILITY 23: the table is at the previous version or
the next, never a partial one).

``read_dataset`` and ``list_tables`` are the read API the warehouse builds on.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from deltalake import DeltaTable

from loopml.core import layout
from loopml.core.clock import utcnow
from loopml.core.errors import LoopmlError, NotFoundError, ValidationError
from loopml.core.lake import (
    PENDING_VERSION,
    ColumnInfo,
    LakeTable,
    TableCommit,
    WriteMode,
    validate_table_name,
    validate_write_mode,
)
from loopml.data import _delta, _guarded, _tables, housekeeping
from loopml.data.schema import (
    cast_batches,
    check_names,
    columns_of,
    describe_number_like,
    first_line,
    number_like_strings,
    plan_cast,
    schema_from,
    unreadable,
)
from loopml.settings import LakeSettings
from loopml.storage import ArtifactStore
from loopml.storage.native import NativeLocation
from loopml.store import MetadataStore, lake_tables, projects

if TYPE_CHECKING:
    import pyarrow.dataset as ds

log = logging.getLogger("loopml.data")
MAX_HEAD = 1000


def list_tables(store: MetadataStore, project: str) -> list[LakeTable]:
    """A project's tables, by name, as their rows last recorded them (no storage I/O).

    Raises:
        NotFoundError: no such project.
    """
    with store.session() as session:
        return lake_tables.list_(session, project)


def get_table(
    store: MetadataStore, artifacts: ArtifactStore, project: str, table: str
) -> LakeTable:
    """A table, reconciled with its Delta log first.

    Raises:
        NotFoundError: no such project or table.
    """
    row, loc = _tables.locate(store, artifacts, project, table, pending=True)
    dt = _delta.open_table(loc)
    if dt is not None:
        row = _tables.reconcile(store, row, dt)
    if row.version == PENDING_VERSION:  # its first ingest has not committed: no table yet
        _tables.locate(store, artifacts, project, table)  # raises NotFoundError
    return row


def sweep_pending(
    store: MetadataStore, artifacts: ArtifactStore, *, older_than: timedelta
) -> tuple[int, int]:
    """Settle the rows of tables whose first ingest never recorded its commit (the writer
    was killed, or refused): one whose log holds the commit is reconciled (the table
    exists), one created more than ``older_than`` ago with no commit is deleted with its
    folder (a younger one may be a first ingest still streaming its file).

    Returns:
        How many were reconciled and how many deleted.
    """
    with store.session() as session:
        rows = lake_tables.pending(session, utcnow() - older_than)
    completed = deleted = 0
    for row in rows:
        _, loc = _tables.locate(store, artifacts, row.project, row.name, pending=True)
        dt = _delta.open_table(loc)
        if dt is not None:
            completed += _tables.reconcile(store, row, dt).version != PENDING_VERSION
        else:
            deleted += _tables.abandon(store, artifacts, row)
    return completed, deleted


def open_delta(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    version: int | None = None,
) -> DeltaTable:
    """The table's ``DeltaTable`` at ``version`` (the latest when ``None``).

    Raises:
        NotFoundError: no such project or table, no data committed yet, or no such version.
    """
    _, loc = _tables.locate(store, artifacts, project, table)
    try:
        dt = _delta.open_table(loc, version)
    except Exception as exc:
        if version is None:
            raise
        raise NotFoundError(
            f"table {table!r} has no version {version}: see its history for the versions",
            details={"table": table, "version": version},
        ) from exc
    if dt is None:
        raise NotFoundError(
            f"table {table!r} has no data yet: ingest a file first", details={"table": table}
        )
    return dt


def read_dataset(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    version: int | None = None,
) -> ds.Dataset:
    """The table's rows at ``version`` (latest when ``None``) as a lazy pyarrow dataset.

    A table created with columns but no data yet reads as an empty dataset of those columns.

    Raises:
        NotFoundError: no such project, table or version.
    """
    row, loc = _tables.locate(store, artifacts, project, table)
    if version is None:
        # The latest version: one open serves both the "no data yet" check and the read.
        latest_dt = _delta.open_table(loc)
        if latest_dt is None:
            schema = pa.schema(
                [pa.field(c.name, pa.type_for_alias(c.type), c.nullable) for c in row.columns]
            )
            import pyarrow.dataset as ds

            return ds.dataset(schema.empty_table())
        dt = latest_dt
    else:
        dt = open_delta(store, artifacts, project, table, version)
    with _delta.delta_errors("reading the table"):
        dataset = dt.to_pyarrow_dataset()
    latest = _delta.open_table(loc) if version is not None else None
    if latest is not None and version is not None and version < latest.version():
        housekeeping.check_readable(table, version, dataset, latest)
    return dataset


def create_table(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    *,
    columns: list[ColumnInfo] | None = None,
    description: str = "",
    actor: str,
) -> LakeTable:
    """Create a table (emits ``table.created``); with ``columns``, also its empty version 0.

    Raises:
        ValidationError: a bad name or an unknown column type.
        AlreadyExistsError: the table exists.
    """
    schema = schema_from(columns) if columns else None
    with store.session() as session:
        lake_tables.create(session, project, table, description=description, actor=actor)
    if schema is not None:
        _, loc = _tables.locate(store, artifacts, project, table)
        _delta.create_empty(loc, schema, f"{project}/{table}")
    return get_table(store, artifacts, project, table)


def ingest_arrow(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    data: pa.Table | pa.RecordBatchReader,
    *,
    mode: WriteMode = "append",
    create: bool = True,
    actor: str,
    lake_settings: LakeSettings | None = None,
    commit_metadata: Mapping[str, str] | None = None,
    delta_table: DeltaTable | None = None,
    located: tuple[LakeTable, NativeLocation] | None = None,
    strict: bool = False,
    declared: Collection[str] = (),
) -> TableCommit:
    """Write ``data`` to a table as one Delta commit and emit ``table.appended``.

    The first write creates the table and fixes its schema; later appends must match it,
    after safe casts (see ``loopml.data.schema``). ``overwrite`` replaces rows and schema.
    A table with a validation contract checks the batch first (``loopml.data._guarded``):
    ``reject`` refuses it whole, ``quarantine`` lands its good rows and writes the bad ones
    to ``<table>__rejected``; either way a report is stored.

    Args:
        data: the rows; a reader is streamed, never loaded whole.
        mode: ``append`` or ``overwrite``.
        create: create the table if it does not exist (else ``NotFoundError``).
        actor: who wrote, for the event.
        lake_settings: with them, compact the table afterwards when it has too many small
            files (see ``loopml.data.housekeeping``); without, never.
        commit_metadata: more entries for the commit's ``commitInfo`` in the Delta log (the
            idempotency keys of record posts: see ``loopml.data._delta.keys_metadata``);
            never written to a ``quarantine`` contract's ``<table>__rejected``.
        delta_table: the table, already open at a recent version (``open_delta``), to
            write through instead of reading its log again; it is left at the new version.
            No other thread may use it meanwhile.
        located: the table's row and location as just read (and reconciled with
            ``delta_table``), which saves reading them again; the row must be current.
        strict: refuse data with a text column whose values are numbers but for a few,
            before anything is written (by default it lands, and when it creates the
            schema the commit's ``warnings`` say which rows made the column text).
        declared: the columns whose type the writer declared (``files.read_upload``'s
            ``columns``): text because it was asked for, so never warned about or refused.

    Returns:
        The commit (its version and the rows it added).

    Raises:
        ValidationError: a bad name or mode, data that does not fit the schema
            (``details.columns`` names each column with expected and found types and rows),
            or a batch that failed a ``reject`` contract (``details.report``).
        NotFoundError: no such project, or no such table and ``create`` is false.
        ConflictError: a concurrent writer conflicted; retry.
    """
    validate_table_name(table)
    mode = validate_write_mode(mode)
    if strict:
        data = _strict_checked(data, declared)
    row, loc = located or _tables.located(store, artifacts, project, table, create, actor)
    try:
        return _ingest_located(
            store,
            artifacts,
            (row, loc),
            data,
            mode=mode,
            actor=actor,
            lake_settings=lake_settings,
            commit_metadata=commit_metadata,
            delta_table=delta_table,
            strict=strict,
            declared=declared,
        )
    except BaseException as exc:
        _tables.abandon_on_failure(store, artifacts, row, exc)
        raise


def _ingest_located(
    store: MetadataStore,
    artifacts: ArtifactStore,
    located: tuple[LakeTable, NativeLocation],
    data: pa.Table | pa.RecordBatchReader,
    *,
    mode: WriteMode,
    actor: str,
    lake_settings: LakeSettings | None,
    commit_metadata: Mapping[str, str] | None,
    delta_table: DeltaTable | None,
    strict: bool,
    declared: Collection[str],
) -> TableCommit:
    row, loc = located
    project, table = row.project, row.name
    if row.contract is None:
        return _write(
            store,
            artifacts,
            project,
            table,
            data,
            mode,
            actor,
            lake_settings,
            commit_metadata,
            delta_table,
            located=(row, loc),
            strict=strict,
            declared=declared,
        )

    def write(name: str, rows: pa.Table, how: WriteMode) -> TableCommit:
        _tables.ensure_row(store, project, name, True, actor)
        if name != table:
            return _write(store, artifacts, project, name, rows, how, actor, lake_settings)
        return _write(
            store,
            artifacts,
            project,
            name,
            rows,
            how,
            actor,
            lake_settings,
            commit_metadata,
            delta_table,
            strict=strict,
            declared=declared,
        )

    def existing(column: str) -> pa.ChunkedArray | None:
        dataset = read_dataset(store, artifacts, project, table)
        if column not in dataset.schema.names:
            return None
        with _delta.delta_errors("reading the table"):
            return dataset.to_table(columns=[column]).column(column)

    return _guarded.ingest(store, row, data, mode=mode, actor=actor, write=write, existing=existing)


def _write(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    data: pa.Table | pa.RecordBatchReader,
    mode: WriteMode,
    actor: str,
    lake_settings: LakeSettings | None,
    metadata: Mapping[str, str] | None = None,
    delta_table: DeltaTable | None = None,
    located: tuple[LakeTable, NativeLocation] | None = None,
    strict: bool = False,
    declared: Collection[str] = (),
) -> TableCommit:
    # The table's log is read once: the write goes through the open table, which leaves it
    # at the new version for recording and the compaction check.
    row, loc = located or _tables.locate(store, artifacts, project, table, pending=True)
    dt = delta_table if delta_table is not None else _delta.open_table(loc)
    if dt is not None:
        row = _tables.reconcile(store, row, dt)
    reader = _tables.reader(data)
    try:
        first, batches = _tables.peek(reader)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise unreadable(exc) from exc
    check_names(reader.schema)
    # Rebuilt from Python's names: a name that is not UTF-8 in the file arrives here with
    # replacement characters, and must never reach the native writer raw (it panics).
    target = pa.schema([pa.field(f.name, f.type, f.nullable) for f in reader.schema])
    warnings: list[str] = []
    if dt is not None and mode == "append":
        target = plan_cast(_delta.arrow_schema(dt), reader.schema, first)
    elif first is not None:
        warnings = _number_like(first, strict, declared, first_line(reader.schema))
    failures: list[LoopmlError] = []
    stream = pa.RecordBatchReader.from_batches(target, cast_batches(batches, target, failures))
    try:
        commit_id = _delta.write(
            loc, stream, mode, metadata=metadata, table=dt, sample=first, name=f"{project}/{table}"
        )
    except Exception:
        if failures:
            raise failures[0] from None
        raise
    commit = _tables.record(store, row, loc, commit_id, mode, actor, dt)
    if warnings:
        commit = commit.model_copy(update={"warnings": warnings})
    if lake_settings is not None and housekeeping.compaction_due(dt, lake_settings):
        housekeeping.maybe_compact(store, artifacts, project, table, lake_settings, actor=actor)
    return commit


def _strict_checked(
    data: pa.Table | pa.RecordBatchReader, declared: Collection[str]
) -> pa.RecordBatchReader:
    # Checked before the table's row exists: a refused first write leaves nothing behind.
    # (An append to an existing table is checked against its schema instead.)
    reader = _tables.reader(data)
    try:
        first, batches = _tables.peek(reader)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise unreadable(exc) from exc
    if first is not None:
        _number_like(first, True, declared, first_line(reader.schema))
    return pa.RecordBatchReader.from_batches(reader.schema, batches)


def _number_like(
    first: pa.RecordBatch, strict: bool, declared: Collection[str], line: int | None
) -> list[str]:
    found = [p for p in number_like_strings(first) if p["column"] not in declared]
    messages = [describe_number_like(p, line) for p in found]
    if found and strict:
        raise ValidationError(
            "refused (strict): " + "; ".join(messages) + ". Fix those rows, or ingest "
            "without strict mode (no `--strict`; API: strict=false) to store the column as text",
            details={"columns": found},
        )
    return [
        m + ": fix them and ingest again in overwrite mode (`loopml ingest --mode overwrite`; "
        "API: mode=overwrite), or refuse such files with strict mode (`--strict`; API: strict=true)"
        for m in messages
    ]


def history(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    limit: int | None = None,
) -> list[TableCommit]:
    """The table's commits, newest first (empty before the first commit); the table's row
    is reconciled with its log first, as ``get_table`` does."""
    row, loc = _tables.locate(store, artifacts, project, table)
    dt = _delta.open_table(loc)
    if dt is None:
        return []
    _tables.reconcile(store, row, dt)
    return _delta.history(dt, limit)


def head(
    store: MetadataStore, artifacts: ArtifactStore, project: str, table: str, n: int = 10
) -> pa.Table:
    """The first ``n`` rows (at most 1000) of the table's latest version."""
    if not 0 <= n <= MAX_HEAD:
        raise ValidationError(
            f"n must be between 0 and {MAX_HEAD}, got {n}", details={"field": "n"}
        )
    dataset = read_dataset(store, artifacts, project, table)
    with _delta.delta_errors("reading the table"):
        return dataset.head(n)


def head_json(
    store: MetadataStore, artifacts: ArtifactStore, project: str, table: str, n: int = 10
) -> tuple[list[ColumnInfo], list[dict[str, Any]]]:
    """``head``'s columns and rows, the values ready for JSON (bytes as text, NaN as null)."""
    rows = head(store, artifacts, project, table, n)
    return columns_of(rows.schema), [_jsonable(r) for r in rows.to_pylist()]


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, float) and value != value:  # NaN is not JSON
            value = None
        out[key] = value
    return out


def delete_table(
    store: MetadataStore, artifacts: ArtifactStore, project: str, table: str, *, actor: str
) -> int:
    """Delete a table (emits ``table.deleted``) and free its Delta folder.

    The row goes first, so nothing ever names a half-deleted folder; a folder left behind by
    a failure lives under the table's id, which no new table reuses.

    Returns:
        How many files were freed.
    """
    with store.session() as session:
        project_id = projects.get(session, project).id
        deleted = lake_tables.delete(session, project, table, actor=actor)
    prefix = layout.lake_table_prefix(project_id, deleted.id)
    try:
        return artifacts.delete_prefix(prefix)
    except Exception:
        log.exception("table %s/%s deleted, but freeing %s failed", project, table, prefix)
        return 0
