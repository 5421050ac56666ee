"""Dataset snapshots: immutable, hashed, profiled versions of a source, and their splits.

``create_version`` reads a source through ``materialize`` (a lake table version, or one
SQL query over pinned table versions), puts the rows in canonical order and hashes them
(``loopml.data.canonical``), profiles every column (``loopml.data.profile``), optionally
freezes a train/eval split (``loopml.data.split``), writes the Parquet files to the
artifact store, and only then records the version in the metadata DB, in one transaction
with its event. A failure after a write deletes what was written; a process killed in
between leaves files under a version id that no row names, never a row without its files.

Creating from the same inputs again returns the latest version instead of a copy, when it
has the same content hash and (if a split is asked for) the same split spec
(``created`` is false).

Reading (``read_version``) verifies the rows against their content hash (or the split
part's hash), so a snapshot whose file was changed in storage is refused.

``create_version_streamed`` makes the same version of one SELECT whatever its size: DuckDB
sorts the rows into canonical order in a query worker (spilling to disk), and the hash,
profile and split are taken a column at a time from a local file (``_dataset_files``).
Training sets (``features.offline``) are made this way.

Example:
    >>> made = create_version(store, artifacts, "default", "churn_train",
    ...                       "SELECT * FROM churn WHERE age > 30", actor="me",
    ...                       split=SplitSpec(eval_fraction=0.2, stratify="label"))
    >>> eval_rows = read_version(store, artifacts, "default", "churn_train", part="eval")
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass

import pyarrow as pa

from loopml.core import layout
from loopml.core.datasets import (
    MAX_DESCRIPTION,
    Dataset,
    DatasetProfile,
    DatasetRef,
    DatasetVersion,
    DatasetVersionInfo,
    DatasetVersionResult,
    Part,
    SourceTable,
    SplitSpec,
    split_conflict,
    validate_dataset_name,
)
from loopml.core.errors import NotFoundError
from loopml.core.ids import new_id
from loopml.core.types import Page
from loopml.data._dataset_files import (
    Parts,
    SnapshotFile,
    Writes,
    load_verified,
    summarize,
    write_sorted,
)
from loopml.data._sandbox import QueryLimits
from loopml.data.canonical import canonicalize, content_hash
from loopml.data.profile import profile_table
from loopml.data.schema import columns_of
from loopml.data.sources import SourceVersion, materialize, stream
from loopml.data.warehouse import DEFAULT_TIMEOUT_S, WarehouseLimits
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, check_actor, check_text, datasets, projects
from loopml.store.datasets import StaleDatasetError, VersionDraft

log = logging.getLogger("loopml.data")
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
DATA_FILE = "data.parquet"
_ATTEMPTS = 3


@dataclass(frozen=True)
class _Snapshot:
    """A source's rows in canonical form, hashed and profiled: a version to record."""

    source: str
    query: str | None
    sources: list[SourceTable]
    rows: pa.Table | SnapshotFile
    digest: str
    profile: DatasetProfile
    parts: Parts | None


def _snapshot(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    source: str,
    split: SplitSpec | None,
    timeout_s: float,
) -> _Snapshot:
    found = materialize(store, artifacts, project, source, timeout_s=timeout_s)
    return _snapshot_of(found.table, source, found.query, found.sources, split)


def _snapshot_of(
    table: pa.Table,
    source: str,
    query: str | None,
    sources: list[SourceVersion],
    split: SplitSpec | None,
) -> _Snapshot:
    rows = canonicalize(table)
    return _Snapshot(
        source=source,
        query=query,
        sources=[SourceTable(table=s.table, version=s.version) for s in sources],
        rows=rows,
        digest=content_hash(rows, ordered=True),
        profile=profile_table(rows),
        parts=None if split is None else Parts.of(rows, split),
    )


def create_version(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    name: str,
    source: str,
    *,
    description: str = "",
    split: SplitSpec | None = None,
    actor: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> DatasetVersionResult:
    """Snapshot ``source`` as the next version of dataset ``name`` (created if new).

    Args:
        source: a table (``churn``, ``churn@3``) or one SELECT over the project's tables.
        description: the dataset's description (kept when empty).
        split: freeze a train/eval split at once.
        actor: who did it, for the events.
        timeout_s: the query's time limit.

    Returns:
        The version; ``created`` is false when the latest version already held the same
        content (and split), which is then returned instead of a copy.

    Raises:
        ValidationError: a bad name, description or split, a refused or failing query, a
            nested column, or a split that cannot be made (too few rows, unknown column, a
            class of one row).
        NotFoundError: no such project, table or table version.
        QueryTimeoutError: the query ran past ``timeout_s``.
    """
    validate_dataset_name(name)
    check_text("description", description, max_length=MAX_DESCRIPTION, allow_empty=True)
    check_actor(actor)
    with store.session() as session:
        project_id = projects.get(session, project).id
    snapshot = _snapshot(store, artifacts, project, source, split, timeout_s)
    return _keep(store, artifacts, project_id, project, name, snapshot, description, actor)


def create_version_from_rows(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    name: str,
    rows: pa.Table,
    *,
    source: str,
    sources: list[SourceVersion],
    description: str = "",
    split: SplitSpec | None = None,
    actor: str,
) -> DatasetVersionResult:
    """Snapshot rows computed elsewhere (a point-in-time training set) as the next version
    of dataset ``name``, as ``create_version`` does; ``source`` says how they were made and
    ``sources`` are the table versions they were made from."""
    validate_dataset_name(name)
    check_text("description", description, max_length=MAX_DESCRIPTION, allow_empty=True)
    check_actor(actor)
    with store.session() as session:
        project_id = projects.get(session, project).id
    snapshot = _snapshot_of(rows, source, None, sources, split)
    return _keep(store, artifacts, project_id, project, name, snapshot, description, actor)


def create_version_streamed(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    name: str,
    sql: str,
    *,
    source: str,
    given: dict[str, pa.Table] | None = None,
    sources: list[SourceVersion] | None = None,
    description: str = "",
    split: SplitSpec | None = None,
    actor: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    batch_rows: int = 65_536,
    spill_bytes: int = 32 * 1024**3,
) -> DatasetVersionResult:
    """``create_version`` of one SELECT, with memory bounded whatever the result's size: a
    row group (about 16 MiB) and one column of it at a time.

    DuckDB puts the rows in canonical order (``ORDER BY ALL``, which sorts as
    ``canonical_order`` does), spilling past its memory budget to a temporary folder (up to
    ``spill_bytes``), in a query worker that writes them to disk a batch at a time; here
    they are written to a local Parquet file ``batch_rows`` at a time, then hashed,
    profiled and split one column at a time (``_dataset_files.summarize``), and the files
    are copied to the artifact store a chunk at a time. The version is the one
    ``create_version_from_rows`` makes of the same rows (same hash, profile and split).

    Args:
        sql: one SELECT over the project's tables and the ``given`` ones (see
            ``sources.stream``).
        source: how the version says it was made.
        sources: table versions behind ``given`` rows, recorded with those the query read.

    Raises:
        As ``create_version``.
    """
    validate_dataset_name(name)
    check_text("description", description, max_length=MAX_DESCRIPTION, allow_empty=True)
    check_actor(actor)
    with store.session() as session:
        project_id = projects.get(session, project).id
    ordered = f"SELECT * FROM (\n{sql}\n) AS _loopml_snapshot ORDER BY ALL"  # noqa: S608
    limits = WarehouseLimits(sandbox=QueryLimits(spill_bytes=spill_bytes))
    with tempfile.TemporaryDirectory(prefix="loopml-snapshot-") as folder:
        with stream(
            store,
            artifacts,
            project,
            ordered,
            timeout_s=timeout_s,
            batch_rows=batch_rows,
            limits=limits,
            given=given,
        ) as streamed:
            rows = write_sorted(streamed.batches, os.path.join(folder, DATA_FILE))
            behind = sorted({*streamed.sources, *(sources or [])})
            read = [SourceTable(table=s.table, version=s.version) for s in behind]
        summary = summarize(rows, split, folder)
        snapshot = _Snapshot(
            source=source,
            query=None,
            sources=read,
            rows=rows,
            digest=summary.digest,
            profile=summary.profile,
            parts=summary.parts,
        )
        return _keep(store, artifacts, project_id, project, name, snapshot, description, actor)


def _keep(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project_id: str,
    project: str,
    name: str,
    snapshot: _Snapshot,
    description: str,
    actor: str,
) -> DatasetVersionResult:
    split = None if snapshot.parts is None else snapshot.parts.spec
    same = _unchanged(store, project, name, snapshot.digest, split)
    if same is not None:
        return DatasetVersionResult(**same.model_dump(), created=False)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return _record(
                store, artifacts, project_id, project, name, snapshot, description, actor
            )
        except StaleDatasetError:
            if attempt == _ATTEMPTS:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def _record(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project_id: str,
    project: str,
    name: str,
    snapshot: _Snapshot,
    description: str,
    actor: str,
) -> DatasetVersionResult:
    """One attempt: write the files under the dataset's id (a new one for a new dataset),
    then record the version; files that end up unrecorded are deleted."""
    with store.session() as session:
        dataset_id = datasets.dataset_id(session, project, name) or new_id()
    version_id = new_id()
    prefix = layout.dataset_version_prefix(project_id, dataset_id, version_id)
    writes = Writes(artifacts)
    try:
        writes.put(f"{prefix}/{DATA_FILE}", snapshot.rows)
        frozen = None if snapshot.parts is None else snapshot.parts.write(writes, prefix)
        draft = VersionDraft(
            id=version_id,
            source=snapshot.source,
            query=snapshot.query,
            sources=snapshot.sources,
            row_count=snapshot.rows.num_rows,
            columns=columns_of(snapshot.rows.schema),
            content_hash=snapshot.digest,
            profile=snapshot.profile,
            data_key=f"{prefix}/{DATA_FILE}",
            split=frozen,
        )
        with store.session() as session:
            version, created = datasets.add_version(
                session,
                project,
                name,
                draft,
                dataset_id=dataset_id,
                description=description,
                actor=actor,
            )
    except BaseException:
        writes.undo()
        raise
    if not created:
        writes.undo()
    return DatasetVersionResult(**version.model_dump(), created=created)


def _unchanged(
    store: MetadataStore, project: str, name: str, digest: str, split: SplitSpec | None
) -> DatasetVersion | None:
    # Checked before any file is written; add_version checks again under the row lock.
    try:
        latest = get_version(store, project, DatasetRef(name=name))
    except NotFoundError:
        return None
    if latest.content_hash != digest:
        return None
    if split is not None and (latest.split is None or latest.split.spec != split):
        return None
    return latest


def split_version(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    ref: str | DatasetRef,
    spec: SplitSpec,
    *,
    actor: str,
) -> DatasetVersionResult:
    """Freeze a train/eval split onto a version that has none.

    The same spec again returns the version as it is (``created`` false).

    Raises:
        ValidationError: a bad reference, or a split that cannot be made.
        NotFoundError: no such project, dataset or version.
        ConflictError: the version already has a split with another spec.
        ArtifactIntegrityError: the version's file does not match its content hash.
    """
    check_actor(actor)
    version = get_version(store, project, _ref(ref))
    if version.split is not None:
        if version.split.spec == spec:
            return DatasetVersionResult(**version.model_dump(), created=False)
        raise split_conflict(version.dataset, version.version, version.split)
    _, rows, _ = load_verified(artifacts, version, "all")
    with store.session() as session:
        project_id = projects.get(session, project).id
        dataset_id = datasets.dataset_id(session, project, version.dataset)
    if dataset_id is None:
        raise NotFoundError(f"dataset {version.dataset!r} was deleted meanwhile; create it again")
    prefix = layout.dataset_version_prefix(project_id, dataset_id, version.id)
    parts = Parts.of(rows, spec)
    writes = Writes(artifacts)
    try:
        frozen = parts.write(writes, prefix)
        with store.session() as session:
            done, created = datasets.set_split(
                session, project, version.dataset, version.version, frozen, actor=actor
            )
    except BaseException:
        writes.undo()
        raise
    if not created:
        writes.undo()
    return DatasetVersionResult(**done.model_dump(), created=created)


def _ref(ref: str | DatasetRef) -> DatasetRef:
    return ref if isinstance(ref, DatasetRef) else DatasetRef.parse(ref)


def _read(
    store: MetadataStore, artifacts: ArtifactStore, project: str, ref: DatasetRef, part: Part
) -> tuple[DatasetVersion, pa.Table]:
    version = get_version(store, project, ref)
    _, table, _ = load_verified(artifacts, version, part)
    return version, table


def read_version(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    ref: str | DatasetRef,
    part: Part = "all",
) -> pa.Table:
    """A version's rows (``all``) or one part of its split (``train``, ``eval``), verified
    against their recorded hash.

    Raises:
        ValidationError: a bad reference or part.
        NotFoundError: no such project, dataset or version, or no split for a part.
        ArtifactIntegrityError: the file is missing, unreadable, or holds other rows than
            the hash recorded.
    """
    return _read(store, artifacts, project, _ref(ref), part)[1]


def read_version_file(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    ref: str | DatasetRef,
    part: Part = "all",
) -> tuple[DatasetVersion, bytes, str]:
    """A version's (or a part's) Parquet file, verified as ``read_version`` does: the
    version, the file's bytes and the verified content hash."""
    version = get_version(store, project, _ref(ref))
    data, _, digest = load_verified(artifacts, version, part)
    return version, data, digest


def get_version(store: MetadataStore, project: str, ref: str | DatasetRef) -> DatasetVersion:
    """A version with its profile and split (``name`` or ``name@latest``: the newest)."""
    parsed = _ref(ref)
    with store.session() as session:
        return datasets.get_version(session, project, parsed.name, parsed.version)


def get_dataset(store: MetadataStore, project: str, name: str) -> Dataset:
    """A dataset with its latest version's summary."""
    with store.session() as session:
        return datasets.get(session, project, name)


def list_datasets(
    store: MetadataStore, project: str, *, limit: int = 100, cursor: str | None = None
) -> Page[Dataset]:
    """A project's datasets by name, one page at a time."""
    with store.session() as session:
        return datasets.list_(session, project, limit=limit, cursor=cursor)


def list_versions(
    store: MetadataStore,
    project: str,
    name: str,
    *,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[DatasetVersionInfo]:
    """A dataset's versions, newest first, one page at a time."""
    with store.session() as session:
        return datasets.list_versions(session, project, name, limit=limit, cursor=cursor)


def delete_dataset(
    store: MetadataStore, artifacts: ArtifactStore, project: str, name: str, *, actor: str
) -> int:
    """Delete a dataset, all its versions (emits ``dataset.deleted``) and their files.

    The rows go first, so nothing ever names a half-deleted folder; files left behind by a
    failure live under the dataset's id, which no new dataset reuses.

    Returns:
        How many files were freed.
    """
    with store.session() as session:
        project_id = projects.get(session, project).id
        deleted = datasets.delete(session, project, name, actor=actor)
    prefix = layout.dataset_prefix(project_id, deleted.id)
    try:
        return artifacts.delete_prefix(prefix)
    except Exception:
        log.exception("dataset %s/%s deleted, but freeing %s failed", project, name, prefix)
        return 0
