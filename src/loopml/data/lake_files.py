"""One lake commit of data files that other processes wrote (``loopml.data.parquet_files``).

``begin`` prepares the write where the commit will be made: it finds (or creates) the
table's row, checks the new rows' schema against the table's as an ingest does, and gives
the ``FileSink`` the writers put their files in. ``commit`` then adds every file to the
table as one Delta version, recorded on the table's row and its ``table.appended`` event as
an ingest's commit is; ``abandon`` removes the files when the write failed instead.

A table with a validation contract checks its rows before they land (``_guarded``), so it
is not written this way: ``begin`` answers ``None`` and the caller writes through
``lake.ingest_arrow``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Schema
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from loopml.core.lake import LakeTable, TableCommit, WriteMode, validate_table_name
from loopml.data import _delta, _tables, housekeeping
from loopml.data.parquet_files import DataFile, FileSink, file_schema, remove
from loopml.data.schema import check_names, plan_cast
from loopml.settings import LakeSettings
from loopml.storage import ArtifactStore
from loopml.storage.native import NativeLocation
from loopml.store import MetadataStore


@dataclass(frozen=True)
class FilesWrite:
    """A write in progress: the table as it was found, and where its files go."""

    project: str
    table: str
    row: LakeTable
    loc: NativeLocation
    delta: DeltaTable | None
    mode: WriteMode
    sink: FileSink


def begin(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    schema: pa.Schema,
    *,
    mode: WriteMode,
    actor: str,
) -> FilesWrite | None:
    """Prepare a write of rows with ``schema`` to ``table`` (created when missing), or
    ``None`` when the table has a validation contract.

    Raises:
        ValidationError: a bad table or column name; an append whose schema does not fit
            the table's (as ``lake.ingest_arrow`` words it).
        NotFoundError: no such project.
        DiskFullError: a local lake with no room left.
    """
    validate_table_name(table)
    row, loc = _tables.located(store, artifacts, project, table, True, actor)
    if row.contract is not None:
        return None
    dt = _delta.open_table(loc)
    if dt is not None:
        row = _tables.reconcile(store, row, dt)
    check_names(schema)
    target = pa.schema([pa.field(f.name, f.type, f.nullable) for f in schema])
    if dt is not None and mode == "append":
        target = plan_cast(_delta.arrow_schema(dt), schema, None)
    _delta.ensure_space(loc, f"{project}/{table}")
    if "://" not in loc.uri:  # a local lake: the writers' filesystem opens the folder
        Path(loc.uri).mkdir(parents=True, exist_ok=True)
    sink = FileSink(loc.uri, dict(loc.storage_options), file_schema(target))
    return FilesWrite(project, table, row, loc, dt, mode, sink)


def commit(
    store: MetadataStore,
    artifacts: ArtifactStore,
    write: FilesWrite,
    files: Sequence[DataFile],
    *,
    metadata: Mapping[str, str],
    actor: str,
    lake_settings: LakeSettings | None = None,
) -> TableCommit:
    """Add ``files`` (in this order) to the table as one version, and record it.

    Raises:
        ConflictError: a concurrent writer conflicted (an overwrite, a schema change); the
            files are left for ``abandon``.
    """
    stamp = int(time.time() * 1000)
    adds = [AddAction(f.path, f.size, {}, stamp, True, f.stats) for f in files]
    commit_id = uuid.uuid4().hex
    properties = CommitProperties(
        custom_metadata={
            **metadata,
            _delta.COMMIT_ID_KEY: commit_id,
            "operationMetrics": {
                "num_added_rows": sum(f.rows for f in files),
                "num_added_files": len(files),
            },
        }
    )
    loc, dt, name = write.loc, write.delta, f"{write.project}/{write.table}"
    with _delta.delta_errors("writing the table", loc, name):
        if dt is None:
            create_table_with_add_actions(
                loc.uri,
                Schema.from_arrow(write.sink.schema),
                adds,
                mode=write.mode,
                storage_options=loc.storage_options,
                commit_properties=properties,
                post_commithook_properties=_delta.AFTER_COMMIT,
            )
            dt = _delta.open_table(loc)
            assert dt is not None, "a table was just committed"
        else:
            actions: list[AddAction | RemoveAction] = list(adds)
            dt.create_write_transaction(
                actions,
                write.mode,
                write.sink.schema,
                commit_properties=properties,
                post_commithook_properties=_delta.AFTER_COMMIT,
            )
            _delta.refresh(dt)
    recorded = _tables.record(store, write.row, loc, commit_id, write.mode, actor, dt)
    after = None if write.delta is None else dt  # a new table's first commit: no check
    if lake_settings is not None and housekeeping.compaction_due(after, lake_settings):
        housekeeping.maybe_compact(
            store, artifacts, write.project, write.table, lake_settings, actor=actor
        )
    return recorded


def abandon(write: FilesWrite, files: Sequence[DataFile]) -> None:
    """Delete the files of a write that will not be committed (best effort)."""
    remove(write.sink, files)
