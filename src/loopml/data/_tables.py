"""Helpers of ``loopml.data.lake``: locating a table, reconciling and recording commits."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable
from sqlalchemy.orm import Session

from loopml.core import layout
from loopml.core.clock import utcnow
from loopml.core.errors import AlreadyExistsError, ConflictError, NotFoundError
from loopml.core.ingest import IngestKey
from loopml.core.lake import PENDING_VERSION, LakeTable, TableCommit
from loopml.data import _delta
from loopml.data.schema import columns_of
from loopml.storage import ArtifactStore
from loopml.storage.native import NativeLocation
from loopml.store import MetadataStore, ingest_keys, lake_tables, projects, streams

log = logging.getLogger("loopml.data")
SYSTEM_ACTOR = "system"
_HOUSEKEEPING = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END", "DELETE"})
"""Operations that add no rows and record themselves (``loopml.data.housekeeping``); only
loopml's prune deletes rows of a lake table."""


def locate(
    store: MetadataStore, artifacts: ArtifactStore, project: str, table: str, pending: bool = False
) -> tuple[LakeTable, NativeLocation]:
    """The table's row and its Delta folder; a pending row only with ``pending`` (writers)."""
    with store.session() as session:
        project_id = projects.get(session, project).id
        row = lake_tables.get(session, project, table, pending=pending)
    return row, artifacts.native_location(layout.lake_table_prefix(project_id, row.id))


def located(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    create: bool,
    actor: str,
) -> tuple[LakeTable, NativeLocation]:
    """``locate``, creating the table's row first where it is missing and ``create`` is set."""
    try:
        return locate(store, artifacts, project, table, pending=True)
    except NotFoundError:
        if not create:
            raise
    ensure_row(store, project, table, True, actor)
    return locate(store, artifacts, project, table, pending=True)


def _keys_in(entries: Sequence[Mapping[str, Any]]) -> list[IngestKey]:
    # Every commit after the row's version, not only this process's: a writer that died
    # between its commit and its record left keys that only its commit carries.
    return [key for entry in entries for key in _delta.keys_of(entry)]


def _record_carried(session: Session, row: LakeTable, entries: Sequence[Mapping[str, Any]]) -> None:
    """Record what the commits carry besides rows: idempotency keys, stream states."""
    ingest_keys.record(session, row.project, row.name, _keys_in(entries))
    states = [s for s in map(_delta.stream_state_of, entries) if s is not None]
    if states:
        streams.record_states(session, states, utcnow())


def reconcile(store: MetadataStore, row: LakeTable, dt: DeltaTable) -> LakeTable:
    """Catch the row up with commits in the log that it has not recorded (a writer died in
    between), idempotency keys included."""
    if dt.version() <= row.version:
        return row
    entries = _delta.entries_since(dt, row.version)
    if all(e.get("operation") in _HOUSEKEEPING for e in entries):
        # A compaction (often a background one, about to record itself) changed no rows,
        # a prune records itself: no event for it; the next commit recorded moves the row
        # past it.
        return row
    # A table created with columns records its empty version 0 this way, which is normal;
    # anything else means a writer died between its commit and its record.
    created = all(e.get("operation") == "CREATE TABLE" for e in entries)
    log.log(
        logging.DEBUG if created else logging.WARNING,
        "table %s/%s: log at %d, row at %d; reconciling",
        row.project,
        row.name,
        dt.version(),
        row.version,
    )
    with store.session() as session:
        table = lake_tables.record_commit(
            session,
            row.project,
            row.name,
            version=dt.version(),
            row_count=dt.count(),
            columns=columns_of(_delta.arrow_schema(dt)),
            rows=sum(c.rows_added or 0 for c in map(_delta.commit_of, entries)),
            mode="reconcile",
            actor=SYSTEM_ACTOR,
            reconciled=True,
        )
        _record_carried(session, row, entries)
        return table


def reader(data: pa.Table | pa.RecordBatchReader) -> pa.RecordBatchReader:
    return data.to_reader() if isinstance(data, pa.Table) else data


def peek(reader: pa.RecordBatchReader) -> tuple[pa.RecordBatch | None, Iterator[pa.RecordBatch]]:
    batches = iter(reader)
    first = next(batches, None)
    if first is None:
        return None, iter(())

    def chained() -> Iterator[pa.RecordBatch]:
        yield first
        yield from batches

    return first, chained()


def ensure_row(store: MetadataStore, project: str, table: str, create: bool, actor: str) -> None:
    """Make sure the table has a row: a pending one when the write creates it, so that a
    write that never commits (a crash, a full disk) leaves no table behind."""
    with store.session() as session:
        try:
            lake_tables.get(session, project, table, pending=True)
            return
        except NotFoundError:
            if not create:
                raise
    try:
        with store.session() as session:
            lake_tables.create(session, project, table, actor=actor, pending=True)
    except AlreadyExistsError:
        pass  # created concurrently: the same table either way


def record(
    store: MetadataStore,
    row: LakeTable,
    loc: NativeLocation,
    commit_id: str,
    mode: str,
    actor: str,
    dt: DeltaTable | None = None,
) -> TableCommit:
    """Record this process's commit ``commit_id`` on ``row`` (as it was before the write),
    with the idempotency keys of every commit since; ``dt`` is the table after the write."""
    dt = dt or _delta.open_table(loc)
    assert dt is not None, "a table was just committed"
    entries = _delta.entries_since(dt, row.version)
    commit = _delta.find_commit(dt, commit_id, entries)
    if mode == "append" and len(entries) == 1 and commit.rows_added is not None:
        row_count = row.row_count + commit.rows_added  # nobody else committed since `row`
    else:
        row_count = dt.count()
    with store.session() as session:
        lake_tables.record_commit(
            session,
            row.project,
            row.name,
            version=dt.version(),
            row_count=row_count,
            columns=columns_of(_delta.arrow_schema(dt)),
            rows=commit.rows_added or 0,
            mode=mode,
            actor=actor,
            commit_version=commit.version,
        )
        _record_carried(session, row, entries)
    return commit


def abandon(store: MetadataStore, artifacts: ArtifactStore, row: LakeTable) -> bool:
    """Delete the pending row of a table whose first write never committed, and free its
    folder; a row whose log holds a commit is left to ``reconcile``. Whether it was deleted."""
    if row.version != PENDING_VERSION:
        return False
    _, loc = locate(store, artifacts, row.project, row.name, pending=True)
    if _delta.open_table(loc) is not None:
        return False
    with store.session() as session:
        project_id = projects.get(session, row.project).id
        gone = lake_tables.delete_pending(session, row.project, row.name)
    if gone is None:
        return False
    try:
        artifacts.delete_prefix(layout.lake_table_prefix(project_id, gone.id))
    except Exception:
        log.exception("the half-made table %s/%s's folder was not freed", row.project, row.name)
    return True


def abandon_on_failure(
    store: MetadataStore, artifacts: ArtifactStore, row: LakeTable, exc: BaseException
) -> None:
    """After a write to ``row`` failed with ``exc``: a table this write was creating is not
    left behind (a conflict means another writer is creating it too: theirs)."""
    if row.version != PENDING_VERSION or isinstance(exc, ConflictError):
        return
    try:
        abandon(store, artifacts, row)
    except Exception:
        log.exception("the half-made table %s/%s was left for the sweep", row.project, row.name)
