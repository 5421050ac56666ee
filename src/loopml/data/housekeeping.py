"""Lake table housekeeping: compaction of small files, pruning of old rows, and vacuum of
old versions' files.

Compaction (``OPTIMIZE``) rewrites many small Parquet files into few large ones as a new
version with the same rows; the files it replaced stay until a vacuum frees them, so
every earlier version stays readable until then. An ingest compacts its table by itself
when the table has more than ``lake.compact_min_files`` files smaller than
``lake.small_file_bytes`` (decided from the Delta log, with no storage listing).

Vacuum frees the files that left the table more than ``retention_hours`` ago, which makes
the versions that needed them unreadable, except versions still referenced: a run input
``kind='table'``, ``ref='<project>/<table>@<version>'``, or a dataset version made from the
table version (``referenced_versions``). Those are passed to Delta's vacuum as versions to
keep, so their files survive whatever the retention; nothing is refused.

Pruning (``DELETE``) removes the rows whose timestamp column is before a moment, as a new
version; the files it rewrote or dropped stay until a vacuum frees them.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable

from loopml.core.clock import as_utc
from loopml.core.errors import LoopmlError, NotFoundError, ValidationError
from loopml.core.housekeeping import (
    MAX_RETENTION_HOURS,
    CompactReport,
    PruneReport,
    VacuumReport,
)
from loopml.data import _delta, _tables
from loopml.settings import LakeSettings
from loopml.storage import ArtifactStore
from loopml.storage.native import NativeLocation
from loopml.store import MetadataStore, lake_housekeeping

if TYPE_CHECKING:
    import pyarrow.dataset as ds

log = logging.getLogger("loopml.data")
_COLUMN = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def referenced_versions(store: MetadataStore, project: str, table: str) -> set[int]:
    """The versions of a table that something still references: runs' inputs and the
    sources of dataset versions."""
    with store.session() as session:
        runs = lake_housekeeping.referencing_runs(session, project, table)
        snapshots = lake_housekeeping.referencing_datasets(session, project, table)
    return set(runs) | set(snapshots)


def _latest(
    store: MetadataStore, artifacts: ArtifactStore, project: str, table: str
) -> tuple[DeltaTable, NativeLocation]:
    row, loc = _tables.locate(store, artifacts, project, table)
    dt = _delta.open_table(loc)
    if dt is None:
        raise NotFoundError(
            f"table {table!r} has no data yet: ingest a file first", details={"table": table}
        )
    _tables.reconcile(store, row, dt)
    return dt, loc


def _file_sizes(dt: DeltaTable) -> dict[str, int]:
    with _delta.delta_errors("reading the table's files"):
        actions = pa.table(dt.get_add_actions(flatten=True))
    paths = actions.column("path").to_pylist()
    return dict(zip(paths, actions.column("size_bytes").to_pylist(), strict=True))


def _record(
    store: MetadataStore,
    project: str,
    table: str,
    event: str,
    payload: dict[str, object],
    actor: str,
    version: int,
    row_count: int | None = None,
) -> None:
    with store.session() as session:
        lake_housekeeping.record_housekeeping(
            session,
            project,
            table,
            version=version,
            event=event,
            payload=payload,
            actor=actor,
            row_count=row_count,
        )


def compact(
    store: MetadataStore, artifacts: ArtifactStore, project: str, table: str, *, actor: str
) -> CompactReport:
    """Rewrite a table's small files into large ones as a new version with the same rows.

    Emits ``table.compacted``. With nothing to compact, no version is added.

    Raises:
        NotFoundError: no such project or table, or no data yet.
        ConflictError: a concurrent writer conflicted; retry.
    """
    dt, loc = _latest(store, artifacts, project, table)
    before = _file_sizes(dt)
    with _delta.delta_errors("compacting the table"):
        dt.optimize.compact(
            commit_properties=CommitProperties(custom_metadata={"loopml.actor": actor}),
            post_commithook_properties=_delta.AFTER_COMMIT,
        )
    after_dt = _delta.open_table(loc)
    assert after_dt is not None, "a compacted table has a log"
    after = _file_sizes(after_dt)
    report = CompactReport(
        table=table,
        version=after_dt.version(),
        files_before=len(before),
        files_after=len(after),
        bytes_before=sum(before.values()),
        bytes_after=sum(after.values()),
    )
    _record(store, project, table, "table.compacted", report.model_dump(), actor, report.version)
    return report


def prune(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    *,
    column: str,
    before: datetime,
    actor: str,
) -> PruneReport:
    """Delete the rows whose timestamp ``column`` is before ``before`` (UTC), as a new
    version. Emits ``table.pruned``; with no such row, no version is added and no event.

    Raises:
        NotFoundError: no such project or table, or no data yet.
        ValidationError: ``column`` is not a timestamp column of the table.
        ConflictError: a concurrent writer conflicted; retry.
    """
    dt, _ = _latest(store, artifacts, project, table)
    schema = _delta.arrow_schema(dt)
    at = schema.get_field_index(column) if _COLUMN.fullmatch(column) else -1
    if at < 0 or not pa.types.is_timestamp(schema.field(at).type):
        raise ValidationError(
            f"table {table!r} has no timestamp column {column!r} to prune by",
            details={"table": table, "column": column},
        )
    # The lake's timestamps are naive UTC (``timestamp[us]``); the literal is ours, not a
    # user's text, and the column name was checked above.
    moment = as_utc(before).replace(tzinfo=None).isoformat(timespec="microseconds")
    with _delta.delta_errors("pruning the table"):
        metrics = dt.delete(
            f"{column} < '{moment}'",
            commit_properties=CommitProperties(custom_metadata={"loopml.actor": actor}),
            post_commithook_properties=_delta.AFTER_COMMIT,
        )
    deleted = int(metrics.get("num_deleted_rows", 0) or 0)
    report = PruneReport(
        table=table, version=dt.version(), column=column, before=before, rows_deleted=deleted
    )
    if deleted:
        payload = report.model_dump(mode="json")
        _record(store, project, table, "table.pruned", payload, actor, dt.version(), dt.count())
    return report


def needs_compaction(dt: DeltaTable, settings: LakeSettings) -> bool:
    """Whether the table has more small files than ``settings.compact_min_files``."""
    small = [s for s in _file_sizes(dt).values() if s < settings.small_file_bytes]
    return len(small) > settings.compact_min_files


def compaction_due(dt: DeltaTable | None, settings: LakeSettings) -> bool:
    """Whether a write that left the table at ``dt`` should be followed by a compaction:
    never after the table's first commit (``dt`` is ``None``: one write, few files), and
    when the files cannot be listed (``maybe_compact`` looks again, and logs what fails)."""
    if dt is None:
        return False
    try:
        return needs_compaction(dt, settings)
    except LoopmlError:
        return True


def maybe_compact(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    settings: LakeSettings,
    *,
    actor: str,
) -> CompactReport | None:
    """Compact the table when it has too many small files; a failure is logged, not raised
    (the ingest that called this has already committed)."""
    try:
        _, loc = _tables.locate(store, artifacts, project, table)
        dt = _delta.open_table(loc)
        if dt is None or not needs_compaction(dt, settings):
            return None
        return compact(store, artifacts, project, table, actor=actor)
    except LoopmlError as exc:
        log.warning("automatic compaction of %s/%s failed: %s", project, table, exc)
        return None


def vacuum(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    *,
    retention_hours: int | None,
    dry_run: bool,
    actor: str,
    settings: LakeSettings | None = None,
) -> VacuumReport:
    """Free the files of versions older than ``retention_hours``, except referenced ones.

    ``None`` keeps ``settings.vacuum_retention_hours`` (the default settings' without them).
    The latest version and every version in ``referenced_versions`` keep their files.
    Emits ``table.vacuumed`` (also on a dry run, with ``dry_run`` true).

    Raises:
        ValidationError: a retention below 0 or above ten years.
        NotFoundError: no such project or table, or no data yet.
    """
    if retention_hours is None:
        retention_hours = (settings or LakeSettings()).vacuum_retention_hours
    if not 0 <= retention_hours <= MAX_RETENTION_HOURS:
        raise ValidationError(
            f"retention_hours must be between 0 and {MAX_RETENTION_HOURS}, got {retention_hours}",
            details={"field": "retention_hours"},
        )
    dt, loc = _latest(store, artifacts, project, table)
    keep = sorted(v for v in referenced_versions(store, project, table) if v <= dt.version())
    with _delta.delta_errors("vacuuming the table"):
        deleted = _delta_vacuum(dt, retention_hours, True, keep)
        sizes = _sizes_on_storage(dt, deleted)
        if not dry_run and deleted:
            deleted = _delta_vacuum(dt, retention_hours, False, keep)
    version = dt.version() if dry_run else _version_of(loc, dt)
    report = VacuumReport(
        table=table,
        version=version,
        retention_hours=retention_hours,
        dry_run=dry_run,
        files_deleted=len(deleted),
        bytes_freed=sum(sizes.get(path, 0) for path in deleted),
        kept_versions=keep,
    )
    _record(store, project, table, "table.vacuumed", report.model_dump(), actor, version)
    return report


def _delta_vacuum(
    dt: DeltaTable, retention_hours: int, dry_run: bool, keep: list[int]
) -> list[str]:
    return dt.vacuum(
        retention_hours=retention_hours,
        dry_run=dry_run,
        enforce_retention_duration=False,
        keep_versions=keep or None,
        post_commithook_properties=_delta.AFTER_COMMIT,
    )


def _sizes_on_storage(dt: DeltaTable, paths: list[str]) -> dict[str, int]:
    if not paths:
        return {}
    infos = dt.to_pyarrow_dataset().filesystem.get_file_info(paths)
    return {path: info.size or 0 for path, info in zip(paths, infos, strict=True)}


def _version_of(loc: NativeLocation, dt: DeltaTable) -> int:
    latest = _delta.open_table(loc)
    return dt.version() if latest is None else latest.version()


def check_readable(table: str, version: int, dataset: ds.Dataset, latest: DeltaTable) -> None:
    """Refuse a time-travel read of a version whose files a vacuum freed.

    Only the version's files that the latest version does not share are checked, so reading
    an old version of an append-only table costs no storage request.

    Raises:
        NotFoundError: some of the version's files are gone.
    """
    import pyarrow.dataset as ds

    if not isinstance(dataset, ds.FileSystemDataset):
        return
    current = set(_file_sizes(latest))
    others = [path for path in dataset.files if path not in current]
    if not others:
        return
    with _delta.delta_errors("reading the table"):
        infos = dataset.filesystem.get_file_info(others)
    if any(info.type == pafs.FileType.NotFound for info in infos):
        raise NotFoundError(
            f"version {version} of table {table!r} is no longer readable: a vacuum freed its "
            "files. Read a later version; reference a version from a run's inputs to keep it",
            details={"table": table, "version": version},
        )
