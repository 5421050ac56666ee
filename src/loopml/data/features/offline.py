"""Point-in-time training sets: feature views joined onto an entity table as of its rows.

Each entity row (keys, a time, usually a label) gets, from each view, the values of the
newest view row of the same keys whose event time is at or before the entity row's time —
DuckDB's ``ASOF LEFT JOIN`` — and null when there is none or when it is older than the
view's TTL at that time. A value from after the row's time is never used: that is the
leak point-in-time correctness rules out.

A training set (``training_set``) is one SELECT run by the sandboxed warehouse
(``training_sql``): the entity rows and each view's rows as common table expressions, the
ASOF joins, the TTL as a ``CASE``. ``datasets.create_version_streamed`` runs it in a query
worker that sorts the result into canonical order (spilling to disk past its memory
budget) and writes it a batch at a time, so no process holds the training set whole:
memory is bounded by DuckDB's budget and one column of the result, whatever the size.
Every table version read is known (the result's sources), and the event
``feature_training_set.created`` records which view versions were joined. The entity rows
may instead be a dataset version (or a part of its split), read verified against its
hash and given to the query as a table; its table versions become the result's sources,
and the event names the version.

``point_in_time`` is the same join over tables already in memory (the skew check's
re-join of logged rows): only keys, times and row numbers go through DuckDB, and Arrow
gathers the feature columns.

Example:
    >>> made = training_set(store, artifacts, "default", "churn_train",
    ...                     entities="labels", views=["user_stats"], actor="me")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from loopml.core.datasets import (
    DatasetRef,
    DatasetVersion,
    DatasetVersionResult,
    Part,
    SplitSpec,
)
from loopml.core.errors import ValidationError
from loopml.core.features import COLUMN_PATTERN, FeatureView
from loopml.core.ids import new_id
from loopml.data import datasets
from loopml.data.features import views as view_specs
from loopml.data.features.views import check_against, source_schema, view_sql
from loopml.data.sources import Materialized, SourceVersion, parse_table_source
from loopml.data.warehouse import MAX_TIMEOUT_S
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events

if TYPE_CHECKING:
    from loopml.data._duckdb import duckdb

MAX_VIEWS = 20
_ROW = "__loopml_row"
_VROW = "__loopml_view_row"
_TS = "__loopml_ts"
_ENTITIES = "_loopml_entities"
_VIEW = "_loopml_view"


@dataclass(frozen=True)
class JoinedView:
    """A view version and the rows read from its source, to join."""

    view: FeatureView
    rows: Materialized


def _check_entities(schema: pa.Schema, event_time: str, found: list[FeatureView]) -> None:
    names = schema.names
    wanted = {event_time} | {k for view in found for k in view.spec.entities}
    missing = sorted(wanted - set(names))
    if missing:
        raise ValidationError(
            f"the entity table has no column {missing}: it needs the time column "
            f"{event_time!r} and each view's entity keys; it has {names[:50]}",
            details={"field": "entities", "missing": missing},
        )
    kind = schema.field(event_time).type
    if not (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        raise ValidationError(
            f"the entity table's {event_time!r} is {kind}: expected a timestamp or a date",
            details={"field": "event_time", "type": str(kind)},
        )
    seen = set(names)
    for view in found:
        clash = sorted(seen & set(view.spec.features))
        if clash:
            raise ValidationError(
                f"feature view {view.name!r} has features {clash} that another view or "
                "the entity table already has: rename them in one of the views",
                details={"field": "views", "view": view.name, "columns": clash},
            )
        seen |= set(view.spec.features)


def join_sql(event_time: str, joined: list[JoinedView]) -> str:
    """The ASOF join of every view onto ``_entities``, narrow: each entity row's number and,
    per view, the number of the view row it gets (null when none, or past the TTL).

    Only keys, times and row numbers go through DuckDB; the feature columns are gathered
    afterwards by Arrow (``take``), so a wide view is never sorted or copied row by row.
    """
    selects = [f"e.{_ROW}"]
    joins = []
    for n, item in enumerate(joined):
        spec = item.view.spec
        alias = f"v{n}"
        ttl = f"{alias}.{_TS} >= e.{_TS} - to_seconds({spec.ttl_s})"
        selects.append(f"CASE WHEN {ttl} THEN {alias}.{_VROW} END AS {_VROW}{n}")
        keys = " AND ".join(f'e."{k}" = {alias}."{k}"' for k in spec.entities)
        # Every name in this SQL matched COLUMN_PATTERN or VIEW_NAME_PATTERN: no quoting
        # can be escaped, and no value is spliced in.
        view = f'(SELECT *, "{spec.event_time}" AS {_TS} FROM _view{n})'  # noqa: S608
        joins.append(f"ASOF LEFT JOIN {view} AS {alias}\n  ON {keys} AND e.{_TS} >= {alias}.{_TS}")
    stamped = f'make_timestamp(epoch_us("{event_time}")) AS {_TS}'
    entities = f"(SELECT *, {stamped} FROM _entities)"  # noqa: S608
    return (
        f"SELECT {', '.join(selects)}\nFROM {entities} AS e\n"
        + "\n".join(joins)
        + f"\nORDER BY e.{_ROW}"
    )


def connect() -> duckdb.DuckDBPyConnection:
    """The join's DuckDB connection.

    DuckDB estimates a registered Arrow table at about one row, and under
    ``asof_loop_join_threshold`` (64) rows it plans an ASOF join as a nested loop: quadratic.
    Measured here: 20,000 entity rows against a 5,000-row view took 1.0 s as a loop and
    0.23 s as an ASOF join; 200,000 against 50,000 took 64 s as a loop. The threshold is
    off, so the plan is always the ASOF join.
    """
    from loopml.data._duckdb import duckdb

    con = duckdb.connect(config={"threads": 2, "memory_limit": "1GB"})
    con.execute("SET asof_loop_join_threshold = 0")
    return con


def _numbered(table: pa.Table, columns: list[str], name: str) -> pa.Table:
    return table.select(columns).append_column(name, pa.array(range(table.num_rows), pa.int64()))


def point_in_time(entities: pa.Table, event_time: str, joined: list[JoinedView]) -> pa.Table:
    """``entities`` with every view's features as of each row's time (see the module)."""
    from loopml.data._duckdb import duckdb

    _check_entities(entities.schema, event_time, [j.view for j in joined])
    keys = sorted({k for j in joined for k in j.view.spec.entities})
    con = connect()
    try:
        con.register("_entities", _numbered(entities, [*keys, event_time], _ROW))
        for n, item in enumerate(joined):
            spec = item.view.spec
            narrow = _numbered(item.rows.table, [*spec.entities, spec.event_time], _VROW)
            con.register(f"_view{n}", narrow)
        try:
            picked = con.sql(join_sql(event_time, joined)).to_arrow_table()
        except duckdb.Error as exc:
            raise ValidationError(
                f"the point-in-time join failed: {str(exc)[:300]} (do the entity keys have "
                "the same types in the entity table and the views?)",
                details={"reason": str(exc)[:500]},
            ) from None
    finally:
        con.close()
    result = entities
    for n, item in enumerate(joined):
        # One contiguous index array into one contiguous table: a take with DuckDB's
        # chunks of indices over a chunked table took 13.4 s, this 3.4 s (200,000 rows x
        # 3 views x 100 features, bench/features.py).
        features = item.rows.table.select(item.view.spec.features).combine_chunks()
        gathered = features.take(picked.column(f"{_VROW}{n}").combine_chunks())
        for name in item.view.spec.features:
            result = result.append_column(features.schema.field(name), gathered.column(name))
    return result


def _views(store: MetadataStore, project: str, names: list[str]) -> list[FeatureView]:
    if not names or len(names) > MAX_VIEWS or len(set(names)) != len(names):
        raise ValidationError(
            f"expected 1 to {MAX_VIEWS} distinct feature views, got {names[:30]}",
            details={"field": "views"},
        )
    return [view_specs.get(store, project, name) for name in names]


def training_sql(entities_sql: str, event_time: str, found: list[FeatureView]) -> str:
    """The training set as one SELECT: every entity row (its columns as they are) with each
    view's features as of its time (see the module), null when there is no view row at or
    before it or the newest is older than the view's TTL.

    ``entities_sql`` is one SELECT of the entity rows; every other name in this SQL
    matched ``COLUMN_PATTERN`` or ``VIEW_NAME_PATTERN``, so no quoting can be escaped and
    no value is spliced in.
    """
    stamped = f'make_timestamp(epoch_us("{event_time}")) AS {_TS}'
    source = f"(\n{entities_sql}\n) AS _loopml_source"
    ctes = [f"{_ENTITIES} AS (SELECT *, {stamped} FROM {source})"]  # noqa: S608
    selects = [f"e.* EXCLUDE ({_TS})"]
    joins = []
    for n, view in enumerate(found):
        spec = view.spec
        alias = f"v{n}"
        source = f"(\n{view_sql(spec)}\n) AS _loopml_source"
        ctes.append(f'{_VIEW}{n} AS (SELECT *, "{spec.event_time}" AS {_TS} FROM {source})')  # noqa: S608
        ttl = f"{alias}.{_TS} >= e.{_TS} - to_seconds({spec.ttl_s})"
        selects += [f'CASE WHEN {ttl} THEN {alias}."{f}" END AS "{f}"' for f in spec.features]
        keys = " AND ".join(f'e."{k}" = {alias}."{k}"' for k in spec.entities)
        joins.append(
            f"ASOF LEFT JOIN {_VIEW}{n} AS {alias}\n  ON {keys} AND e.{_TS} >= {alias}.{_TS}"
        )
    with_ = ",\n".join(ctes)
    return f"WITH {with_}\nSELECT {', '.join(selects)}\nFROM {_ENTITIES} AS e\n" + "\n".join(joins)


def _batch_rows(columns: int) -> int:
    # About 8 MiB of 8-byte values per batch, so a wide training set's batch stays small.
    return max(1024, min(65_536, (8 * 1024**2) // (8 * max(columns, 1))))


def training_set(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    name: str,
    *,
    entities: str | None = None,
    entities_dataset: str | None = None,
    entities_part: Part = "all",
    views: list[str],
    event_time: str = "event_time",
    description: str = "",
    split: SplitSpec | None = None,
    actor: str,
    timeout_s: float = MAX_TIMEOUT_S,
    spill_bytes: int = 32 * 1024**3,
) -> DatasetVersionResult:
    """Join ``views`` onto the entity rows as of each row's ``event_time``; store the
    result as the next version of dataset ``name`` (``created`` false when unchanged).
    Memory is bounded whatever the size (see the module).

    Args:
        entities: a lake table (``labels``, ``labels@2``) or one SELECT over lake tables.
        entities_dataset: instead, a dataset version (``labels``, ``labels@3``), read
            verified against its hash; ``entities_part`` picks ``train`` or ``eval`` of
            its split. The result's lineage names that version and carries its tables.
        views: the feature views, at their newest versions.
        event_time: the entity table's time column.
        timeout_s: the time limit of the query (the joins and the sort; at 3,000,000 rows
            x 303 columns they took longer than the warehouse's 30 s default here).
        spill_bytes: disk the query may use past its memory budget (a temporary folder,
            deleted after it).

    Raises:
        ValidationError: both or neither of ``entities`` and ``entities_dataset``, a bad
            name, reference or part, a missing column, a clash of feature names, a join
            that fails (keys of different types).
        NotFoundError: no such project, table, dataset, version, split or view.
    """
    if not isinstance(event_time, str) or not COLUMN_PATTERN.fullmatch(event_time):
        raise ValidationError(
            f"invalid event_time column {str(event_time)[:80]!r}",
            details={"field": "event_time"},
        )
    found = _views(store, project, views)
    base = _entity_rows(store, artifacts, project, entities, entities_dataset, entities_part)
    for view in found:
        check_against(view.spec, source_schema(store, artifacts, project, view.spec.source))
    _check_entities(base.schema, event_time, found)
    width = len(base.schema) + sum(len(v.spec.features) for v in found)
    pinned = ", ".join(f"{v.name}@{v.version}" for v in found)
    made = datasets.create_version_streamed(
        store,
        artifacts,
        project,
        name,
        training_sql(base.sql, event_time, found),
        source=f"point-in-time join of {pinned} onto {base.said[:2000]}",
        given=base.given,
        sources=base.tables,
        description=description,
        split=split,
        actor=actor,
        timeout_s=timeout_s,
        batch_rows=_batch_rows(width),
        spill_bytes=spill_bytes,
    )
    read = [SourceVersion(s.table, s.version) for s in made.sources]
    _record(store, project, made, found, read, base.dataset, actor)
    return made


@dataclass(frozen=True)
class EntityRows:
    """The entity rows to read, and where from.

    Attributes:
        sql: one SELECT of them, over the project's tables or ``given``.
        schema: their columns.
        given: rows read here (a dataset version), as tables the SELECT reads.
        tables: table versions behind them that the SELECT does not read (a dataset's).
        said: how the result's ``source`` names them (``labels@2``, the SQL, or
            ``dataset labels@3 (train)``).
        dataset: the dataset version read, for the event, else ``None``.
    """

    sql: str
    schema: pa.Schema
    given: dict[str, pa.Table]
    tables: list[SourceVersion]
    said: str
    dataset: dict[str, object] | None


def _entity_rows(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    entities: str | None,
    entities_dataset: str | None,
    part: Part,
) -> EntityRows:
    if (entities is None) == (entities_dataset is None):
        raise _one_way()
    if entities is not None:
        if part != "all":
            raise ValidationError(
                "`entities_part` picks a part of a dataset's split: it needs `entities_dataset`",
                details={"field": "entities_part"},
            )
        if not isinstance(entities, str) or not entities.strip():
            raise _one_way()
        schema = source_schema(store, artifacts, project, entities)
        as_table = parse_table_source(entities.strip())
        if as_table is None:
            # Embedded in a subquery, where a final ';' would not parse.
            sql = entities.strip().rstrip(";")
        else:
            table, pinned = as_table
            sql = f"SELECT * FROM {table}" + ("" if pinned is None else f"@{pinned}")  # noqa: S608
        return EntityRows(sql, schema, {}, [], entities.strip(), None)
    if entities_dataset is None:
        raise _one_way()
    version = datasets.get_version(store, project, DatasetRef.parse(entities_dataset))
    rows = datasets.read_version(store, artifacts, project, version.ref, part)
    # The dataset's own table versions become the result's too: vacuum keeps their files,
    # and the lineage reaches the tables through the dataset.
    tables = [SourceVersion(s.table, s.version) for s in version.sources]
    said = f"dataset {version.ref}" + ("" if part == "all" else f" ({part})")
    digest = version.content_hash if part == "all" else _part_hash(version, part)
    used: dict[str, object] = {
        "dataset": version.dataset,
        "version": version.version,
        "part": part,
        "content_hash": digest,
    }
    # A name of this call's own: no project table can be hidden by it.
    alias = f"loopml_entities_{new_id()}"
    sql = f"SELECT * FROM {alias}"  # noqa: S608
    return EntityRows(sql, rows.schema, {alias: rows}, tables, said, used)


def _one_way() -> ValidationError:
    return ValidationError(
        "give the entity rows one way: `entities` (a lake table or one SELECT) or "
        "`entities_dataset` (a dataset version, NAME or NAME@VERSION)",
        details={"field": "entities"},
    )


def _part_hash(version: DatasetVersion, part: Part) -> str | None:
    if version.split is None:
        return None
    return version.split.train_hash if part == "train" else version.split.eval_hash


def _record(
    store: MetadataStore,
    project: str,
    made: DatasetVersionResult,
    found: list[FeatureView],
    read: list[SourceVersion],
    dataset: dict[str, object] | None,
    actor: str,
) -> None:
    with store.session() as session:
        events.append(
            session,
            type="feature_training_set.created",
            subject=made.dataset,
            project=project,
            payload={
                "dataset": made.dataset,
                "version": made.version,
                "created": made.created,
                "views": [{"view": v.name, "version": v.version} for v in found],
                "tables": [s.as_dict() for s in read],
                "entities_dataset": dataset,
            },
            actor=actor,
        )
