"""SQL transforms: a named ``SELECT`` materialized into a lake table, with its lineage.

``apply`` reads the query's result through ``sources.materialize`` (the warehouse's
sandbox, every table pinned to an exact version), writes it into the output table with
``lake.ingest_arrow`` (so the table's schema rules, validation contract and automatic
compaction apply as to any ingest), and only then records the run, the definition change it
carries and ``transform.applied`` in one transaction. A refused query or a failed write
records nothing and leaves the definition as it was.

A table version's lineage is the run that wrote it, then the runs that wrote that run's
inputs, and so on back to the versions that came in by ingest (``lineage``).

Example:
    >>> run = apply(store, artifacts, "shop", "daily", sql="SELECT day, sum(amount) AS total "
    ...             "FROM sales GROUP BY day", into="daily_sales", actor="me")
    >>> run.inputs, run.output  # [TableVersion(table='sales', version=4)], daily_sales@0
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from loopml.core.errors import AlreadyExistsError, NotFoundError, ValidationError
from loopml.core.lake import LakeTable, WriteMode, validate_write_mode
from loopml.core.transforms import (
    TableVersion,
    Transform,
    TransformLineage,
    TransformRun,
    validate_description,
    validate_output_table,
    validate_sql_text,
    validate_transform_name,
)
from loopml.core.types import Page
from loopml.data import lake
from loopml.data._sandbox import check_query, checker, rewrite_versions
from loopml.data._storable import storable
from loopml.data.sources import materialize, parse_table_source
from loopml.data.warehouse import DEFAULT_TIMEOUT_S
from loopml.settings import LakeSettings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, transforms

MAX_LINEAGE_RUNS = 100
# Commits that add a version without changing the rows: a version made by one of these
# after a transform's write still holds exactly what the transform wrote.
ROW_PRESERVING_OPERATIONS = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END"})


def list_transforms(store: MetadataStore, project: str) -> list[Transform]:
    """A project's transforms, by name; ``NotFoundError`` for no such project."""
    with store.session() as session:
        return transforms.list_(session, project)


def get_transform(store: MetadataStore, project: str, name: str) -> Transform:
    """One transform; ``NotFoundError`` when the project or transform does not exist."""
    with store.session() as session:
        return transforms.get(session, project, name)


def runs(
    store: MetadataStore, project: str, name: str, *, limit: int = 100, cursor: str | None = None
) -> Page[TransformRun]:
    """A transform's runs, newest first, ``limit`` (1 to 1000) at a time."""
    with store.session() as session:
        return transforms.runs(session, project, name, limit=limit, cursor=cursor)


def delete(store: MetadataStore, project: str, name: str, *, actor: str) -> Transform:
    """Delete a transform and its run history (emits ``transform.deleted``).

    The tables it wrote stay, with their data; their versions no longer have a lineage.
    """
    with store.session() as session:
        return transforms.delete(session, project, name, actor=actor)


def define(
    store: MetadataStore,
    project: str,
    name: str,
    *,
    sql: str,
    into: str,
    mode: str | None = None,
    description: str | None = None,
    actor: str,
) -> Transform:
    """Create or change a transform without running it (emits ``transform.defined``).

    The SQL is checked by the warehouse's sandbox now (one read-only ``SELECT``); the tables
    it names need not exist until it is applied. ``mode`` and ``description`` keep their
    values when ``None`` (``overwrite`` and empty for a new transform). A change of SQL,
    table or mode adds one to the revision.

    Raises:
        ValidationError: a bad name, table, mode or description; SQL the sandbox refuses;
            or an ``append`` whose SQL reads its own output table.
        NotFoundError: no such project.
    """
    validate_transform_name(name)
    with store.session() as session:
        current = transforms.find(session, project, name)
    merged_mode = _mode(current, mode)
    _check_definition(sql, into, merged_mode, description)
    with store.session() as session:
        return transforms.save(
            session,
            project,
            name,
            sql=sql,
            into_table=into,
            mode=None if mode is None else merged_mode,
            description=description,
            actor=actor,
        )


def apply(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    name: str,
    *,
    sql: str | None = None,
    into: str | None = None,
    mode: str | None = None,
    description: str | None = None,
    actor: str,
    lake_settings: LakeSettings | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> TransformRun:
    """Run a transform: materialize its SQL into its table and record the run.

    The first apply defines the transform and needs ``sql`` and ``into`` (``mode`` defaults
    to ``overwrite``). Later, any of ``sql``, ``into``, ``mode`` and ``description`` given
    changes the definition (SQL, table or mode add one to the revision), and none re-runs
    the saved one. The change is saved with the run, after the write: a failure anywhere
    before leaves the definition as it was and records no run.

    ``overwrite`` replaces the table's rows and schema with the result (an empty result
    makes an empty version with the result's columns); ``append`` adds the result, which must
    fit the table's schema. An ``append`` may not read its own output table (every re-apply
    would add the table to itself again); ``overwrite`` may, since its inputs are pinned and
    read whole before the write.

    Args:
        lake_settings: passed to ``lake.ingest_arrow``: with them, the output table is
            compacted when it has too many small files.
        timeout_s: the query's time limit (at most 300 s).

    Returns:
        The run: the exact input versions read, the output version written, and its rows.

    Raises:
        ValidationError: a bad definition; SQL the sandbox refuses or that fails; a result
            column the lake cannot store; a result that does not fit the table; or a batch
            the table's ``reject`` contract refused.
        NotFoundError: no such project, transform (with no ``sql``/``into``), table or
            table version.
        QueryTimeoutError: the query ran past ``timeout_s``.
        ConflictError: a concurrent writer conflicted on the table; retry.
    """
    validate_transform_name(name)
    _check_actor(actor)
    with store.session() as session:
        current = transforms.find(session, project, name)
    run_sql, run_into, run_mode = _merge(project, name, current, sql, into, mode)
    _check_definition(run_sql, run_into, run_mode, description)
    found = materialize(store, artifacts, project, run_sql, timeout_s=timeout_s)
    result = storable(found.table)
    commit = lake.ingest_arrow(
        store,
        artifacts,
        project,
        run_into,
        result,
        mode=run_mode,
        actor=actor,
        lake_settings=lake_settings,
    )
    written = _Written(
        sql=run_sql,
        inputs=[TableVersion(table=s.table, version=s.version) for s in found.sources],
        output=TableVersion(table=run_into, version=commit.version),
        rows=commit.rows_added if commit.rows_added is not None else result.num_rows,
    )
    changes = _Changes(sql, into, None if mode is None else run_mode, description)
    try:
        return _record(store, project, name, current, changes, written, actor)
    except AlreadyExistsError:
        # Two first applies of one name raced to create it: the winner's row is there now,
        # and this run is recorded against it.
        return _record(store, project, name, current, changes, written, actor)


@dataclass(frozen=True)
class _Changes:
    """The definition fields an ``apply`` was given (``None``: keep the saved one)."""

    sql: str | None
    into: str | None
    mode: WriteMode | None
    description: str | None

    def any(self) -> bool:
        return any(v is not None for v in (self.sql, self.into, self.mode, self.description))


@dataclass(frozen=True)
class _Written:
    """What an ``apply`` read and wrote, to be recorded as its run."""

    sql: str
    inputs: list[TableVersion]
    output: TableVersion
    rows: int


def _record(
    store: MetadataStore,
    project: str,
    name: str,
    current: Transform | None,
    changes: _Changes,
    written: _Written,
    actor: str,
) -> TransformRun:
    with store.session() as session:
        revision = current.revision if current is not None else 1
        if changes.any() or current is None:
            saved = transforms.save(
                session,
                project,
                name,
                sql=changes.sql,
                into_table=changes.into,
                mode=changes.mode,
                description=changes.description,
                actor=actor,
            )
            revision = saved.revision
        return transforms.record_run(
            session,
            project,
            name,
            revision=revision,
            sql=written.sql,
            inputs=written.inputs,
            output_table=written.output.table,
            output_version=written.output.version,
            rows=written.rows,
            actor=actor,
        )


def _mode(current: Transform | None, mode: str | None) -> WriteMode:
    if mode is not None:
        return validate_write_mode(mode)
    return current.mode if current is not None else "overwrite"


def _merge(
    project: str,
    name: str,
    current: Transform | None,
    sql: str | None,
    into: str | None,
    mode: str | None,
) -> tuple[str, str, WriteMode]:
    if current is None:
        if sql is None and into is None:
            raise NotFoundError(
                f"transform {name!r} not found in project {project!r}: give --sql and --into "
                "to define it on its first apply",
                details={"project": project, "transform": name},
            )
        if sql is None or into is None:
            missing = "sql" if sql is None else "into"
            raise ValidationError(
                f"transform {name!r} does not exist yet, so its first apply needs both sql "
                f"and into; {missing} is missing",
                details={"field": missing, "transform": name},
            )
        return sql, into, _mode(None, mode)
    return (
        current.sql if sql is None else sql,
        current.into_table if into is None else into,
        _mode(current, mode),
    )


def _check_definition(sql: str, into: str, mode: WriteMode, description: str | None) -> None:
    validate_sql_text(sql)
    validate_output_table(into)
    if description is not None:
        validate_description(description)
    read = tables_read(sql)
    if mode == "append" and into in read:
        raise ValidationError(
            f"an append transform cannot read its own output table {into!r}: every apply "
            "would add the table to itself again. Use mode overwrite instead, with the old "
            "rows and the new ones joined by UNION ALL (an overwrite reads its inputs whole, "
            "at pinned versions, before it writes)",
            details={"field": "mode", "into": into},
        )


def _check_actor(actor: str) -> None:
    # Checked before the write too: a bad actor found while recording would leave a table
    # version without its run.
    if not isinstance(actor, str) or not actor or len(actor) > 200:
        raise ValidationError(
            "invalid actor: expected a non-empty string of at most 200 characters",
            details={"field": "actor"},
        )


def tables_read(sql: str) -> set[str]:
    """The tables ``sql`` reads, by name, after the sandbox's check (no table is opened).

    Raises:
        ValidationError: the sandbox refuses the SQL, or it does not parse.
    """
    as_table = parse_table_source(sql)
    if as_table is not None:
        return {as_table[0]}
    refs = check_query(checker(), rewrite_versions(sql))
    return {ref.name for ref in refs}


# ---------------------------------------------------------------- lineage


def produced_by(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    version: int | None = None,
) -> TransformRun | None:
    """The run that wrote ``table@version`` (the current version when ``None``), or ``None``
    when no transform did (it came in by ingest, or its transform was deleted).

    A version made by compaction or vacuum after a transform's write holds the same rows, so
    it is credited to that run.

    Raises:
        NotFoundError: no such project or table, no data yet, or no such version.
    """
    info = lake.get_table(store, artifacts, project, table)
    return _producer(store, artifacts, project, info, _version(info, version))


def lineage(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    version: int | None = None,
    *,
    max_runs: int = MAX_LINEAGE_RUNS,
) -> TransformLineage:
    """Where ``table@version`` came from: the run that wrote it, then the runs that wrote
    that run's inputs, breadth first, back to the versions no transform wrote (``sources``).

    Raises:
        NotFoundError: no such project or table, no data yet, or no such version.
    """
    info = lake.get_table(store, artifacts, project, table)
    start = TableVersion(table=table, version=_version(info, version))
    tables: dict[str, LakeTable | None] = {table: info}
    found: dict[str, TransformRun] = {}
    sources: set[TableVersion] = set()
    seen: set[TableVersion] = set()
    queue = deque([start])
    truncated = False
    while queue:
        item = queue.popleft()
        if item in seen:
            continue
        seen.add(item)
        if item.table not in tables:
            tables[item.table] = _table_or_none(store, artifacts, project, item.table)
        current = tables[item.table]
        run = (
            None if current is None else _producer(store, artifacts, project, current, item.version)
        )
        if run is None:
            sources.add(item)
        elif run.id not in found:
            if len(found) == max_runs:
                truncated = True
                break
            found[run.id] = run
            queue.extend(run.inputs)
    return TransformLineage(
        table=start.table,
        version=start.version,
        runs=list(found.values()),
        sources=sorted(sources, key=lambda s: (s.table, s.version)),
        truncated=truncated,
    )


def _table_or_none(
    store: MetadataStore, artifacts: ArtifactStore, project: str, table: str
) -> LakeTable | None:
    try:
        return lake.get_table(store, artifacts, project, table)
    except NotFoundError:
        return None  # deleted since it was read: its versions have no recorded origin


def _version(info: LakeTable, version: int | None) -> int:
    if info.version < 0:
        raise NotFoundError(
            f"table {info.name!r} has no data yet, so no version has a lineage",
            details={"table": info.name},
        )
    if version is None:
        return info.version
    if not 0 <= version <= info.version:
        raise NotFoundError(
            f"table {info.name!r} has no version {version}: its versions are 0 to {info.version}",
            details={"table": info.name, "version": version},
        )
    return version


def _producer(
    store: MetadataStore, artifacts: ArtifactStore, project: str, info: LakeTable, version: int
) -> TransformRun | None:
    with store.session() as session:
        run = transforms.latest_run_into(
            session, project, info.name, at_most=version, since=info.created_at
        )
    if run is None or run.output_version == version:
        return run
    later = {
        c.version: c.operation
        for c in lake.history(store, artifacts, project, info.name)
        if run.output_version < c.version <= version
    }
    # Every version in between must be in the log (an old entry may have been cleaned up)
    # and must have kept the rows.
    if len(later) == version - run.output_version and all(
        op in ROW_PRESERVING_OPERATIONS for op in later.values()
    ):
        return run
    return None
