"""Point-in-time training sets: feature views joined onto an entity table as of its rows.

Each entity row (keys, a time, usually a label) gets, from each view, the values of the
newest view row of the same keys whose event time is at or before the entity row's time —
DuckDB's ``ASOF LEFT JOIN`` — and null when there is none or when it is older than the
view's TTL at that time. A value from after the row's time is never used: that is the
leak point-in-time correctness rules out.

All inputs are read through ``sources.materialize`` (the sandboxed warehouse), so every
table version read is known; the result becomes a dataset version through
``datasets.create_version_from_rows`` with those versions as its sources, and the event
``feature_training_set.created`` records which view versions were joined. The entity rows
may instead be a dataset version (or a part of its split), read verified against its
hash; its table versions become the result's sources, and the event names the version.

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
from loopml.data import datasets
from loopml.data.features import views as view_specs
from loopml.data.features.views import check_against, view_sql
from loopml.data.sources import Materialized, SourceVersion, materialize
from loopml.data.warehouse import DEFAULT_TIMEOUT_S
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events

if TYPE_CHECKING:
    from loopml.data._duckdb import duckdb

MAX_VIEWS = 20
_ROW = "__loopml_row"
_VROW = "__loopml_view_row"
_TS = "__loopml_ts"


@dataclass(frozen=True)
class JoinedView:
    """A view version and the rows read from its source, to join."""

    view: FeatureView
    rows: Materialized


def _check_entities(table: pa.Table, event_time: str, joined: list[JoinedView]) -> None:
    names = table.schema.names
    wanted = {event_time} | {k for j in joined for k in j.view.spec.entities}
    missing = sorted(wanted - set(names))
    if missing:
        raise ValidationError(
            f"the entity table has no column {missing}: it needs the time column "
            f"{event_time!r} and each view's entity keys; it has {names[:50]}",
            details={"field": "entities", "missing": missing},
        )
    kind = table.schema.field(event_time).type
    if not (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        raise ValidationError(
            f"the entity table's {event_time!r} is {kind}: expected a timestamp or a date",
            details={"field": "event_time", "type": str(kind)},
        )
    seen = set(names)
    for item in joined:
        clash = sorted(seen & set(item.view.spec.features))
        if clash:
            raise ValidationError(
                f"feature view {item.view.name!r} has features {clash} that another view or "
                "the entity table already has: rename them in one of the views",
                details={"field": "views", "view": item.view.name, "columns": clash},
            )
        seen |= set(item.view.spec.features)


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

    _check_entities(entities, event_time, joined)
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
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> DatasetVersionResult:
    """Join ``views`` onto the entity rows as of each row's ``event_time``; store the
    result as the next version of dataset ``name`` (``created`` false when unchanged).

    Args:
        entities: a lake table (``labels``, ``labels@2``) or one SELECT over lake tables.
        entities_dataset: instead, a dataset version (``labels``, ``labels@3``), read
            verified against its hash; ``entities_part`` picks ``train`` or ``eval`` of
            its split. The result's lineage names that version and carries its tables.
        views: the feature views, at their newest versions.
        event_time: the entity table's time column.

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
    base = _entity_rows(
        store, artifacts, project, entities, entities_dataset, entities_part, timeout_s
    )
    joined = []
    for view in found:
        rows = materialize(store, artifacts, project, view_sql(view.spec), timeout_s=timeout_s)
        check_against(view.spec, rows.table.schema)
        joined.append(JoinedView(view, rows))
    table = point_in_time(base.rows.table, event_time, joined)
    read = sorted({*base.rows.sources, *(s for j in joined for s in j.rows.sources)})
    pinned = ", ".join(f"{v.name}@{v.version}" for v in found)
    made = datasets.create_version_from_rows(
        store,
        artifacts,
        project,
        name,
        table,
        source=f"point-in-time join of {pinned} onto {base.said[:2000]}",
        sources=read,
        description=description,
        split=split,
        actor=actor,
    )
    _record(store, project, made, found, read, base.dataset, actor)
    return made


@dataclass(frozen=True)
class EntityRows:
    """The entity rows read, and where from.

    Attributes:
        said: how the result's ``source`` names them (``labels@2``, the SQL, or
            ``dataset labels@3 (train)``).
        dataset: the dataset version read, for the event, else ``None``.
    """

    rows: Materialized
    said: str
    dataset: dict[str, object] | None


def _entity_rows(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    entities: str | None,
    entities_dataset: str | None,
    part: Part,
    timeout_s: float,
) -> EntityRows:
    if (entities is None) == (entities_dataset is None):
        raise _one_way()
    if entities is not None:
        if part != "all":
            raise ValidationError(
                "`entities_part` picks a part of a dataset's split: it needs `entities_dataset`",
                details={"field": "entities_part"},
            )
        read = materialize(store, artifacts, project, entities, timeout_s=timeout_s)
        return EntityRows(read, entities.strip(), None)
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
    return EntityRows(Materialized(rows, tables, None), said, used)


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
