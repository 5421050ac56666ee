"""Run search: filter and sort a project's runs by latest metrics, params, tags and
attributes: the project's id, then one SQL query per page.

The project is looked up by name first and the page's query names it by id (so PostgreSQL's
planner sees how many runs are the project's). The query has two levels. The inner one picks
the page: it filters with ``EXISTS`` probes on the primary keys of ``latest_metrics``,
``params`` and ``run_tags`` (``(run_id, key)``), sorts through outer joins on the same keys,
and starts after the previous page's last run (a keyset: its sort values, then start time
and id), or at a row offset (``LIMIT``/``OFFSET``) to jump, or for params and tags. The
outer one joins the page's (at most 1,000) runs to their experiment and aggregates each run's
params, latest metrics and tags into JSON objects with correlated subqueries, so nothing is
fetched per row and the aggregates are computed only for the page, never for every matching
run.

Sorting by one latest metric alone (the runs table's column sort) picks the page in two
steps instead (``_by_one_metric``): the runs with the metric along the ``(key, value)`` index
of ``latest_metrics``, stopping after the page, then the runs without it. With 100,000 runs
the one-query form joins and sorts them all (1.8 s on SQLite); this reads about a page (35 ms).
A project with fewer than ``SMALL_PROJECT`` runs keeps the one query (the index holds every
project's runs).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    and_,
    case,
    cast,
    exists,
    func,
    null,
    or_,
    select,
)
from sqlalchemy.orm import Session, aliased

from loopml.core.errors import ValidationError
from loopml.core.run_search import (
    AttributeOrder,
    KeyOrder,
    Keyset,
    MetricFilter,
    NameFilter,
    RunPage,
    RunSearch,
    TextFilter,
    TimeFilter,
    folds,
    keyset_cursor,
    keyset_order,
    read_cursor,
)
from loopml.core.runs import Run
from loopml.store import experiments, runs
from loopml.store._like import compare, compare_millis
from loopml.store.orm import ExperimentRow, LatestMetricRow, ParamRow, RunRow, RunTagRow

_OPS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
OFFSET_PATTERN = r"^[0-9]{1,9}$"
_TABLES: dict[str, Any] = {"metric": LatestMetricRow, "param": ParamRow, "tag": RunTagRow}


def parse_offset(cursor: str | None) -> int:
    """The row offset a ``next_cursor`` stands for (``None`` is the first page)."""
    if cursor is None:
        return 0
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 9):
        raise ValidationError(
            f"invalid cursor {cursor[:80]!r}: pass the next_cursor of the previous page",
            details={"field": "cursor", "pattern": OFFSET_PATTERN},
        )
    return int(cursor)


def _filter(flt: MetricFilter | TextFilter | NameFilter | TimeFilter) -> ColumnElement[bool]:
    if flt.kind == "name":
        return compare(RunRow.name, flt.op, flt.value)
    if flt.kind == "time":
        return compare_millis(getattr(RunRow, flt.key), flt.op, flt.value)
    table = aliased(_TABLES[flt.kind])
    if flt.op in ("LIKE", "ILIKE"):
        condition = compare(table.value, flt.op, flt.value)
    else:
        condition = _OPS[flt.op](table.value, flt.value)
    if flt.kind == "metric":
        condition = and_(table.is_nan.is_(False), condition)
    return exists().where(table.run_id == RunRow.id, table.key == flt.key, condition)


def _sort_key(
    query: Select[Any], order: KeyOrder | AttributeOrder
) -> tuple[Select[Any], ColumnElement[Any]]:
    if order.kind == "attribute":
        return query, getattr(RunRow, order.key)
    table = aliased(_TABLES[order.kind])
    query = query.outerjoin(table, and_(table.run_id == RunRow.id, table.key == order.key))
    if order.kind == "metric":
        return query, case((table.is_nan.is_(True), None), else_=table.value)
    return query, table.value


def _direction(column: Any, descending: bool, nullable: bool) -> ColumnElement[Any]:
    """One ORDER BY term; NULLs last, said only where the column may hold one: a plain
    ``DESC`` on a column that cannot is what PostgreSQL reads along an index backwards."""
    ordered: ColumnElement[Any] = column.desc() if descending else column.asc()
    return ordered.nulls_last() if nullable else ordered


def _where(
    query: Select[Any], project_id: str, spec: RunSearch, *, broad: bool = False
) -> Select[Any]:
    """The project is named by its id, so the planner uses its statistics: named through a
    subquery on its name, PostgreSQL guessed half the runs were the project's and read every
    run's metric for a project of 100 (280 ms against 30 beside 100,000 runs).

    ``broad`` marks the project's and the lifecycle's terms as true of most runs (SQLite's
    ``likely``), for the reads along a metric's index: SQLite otherwise takes them, two
    equalities on ``ix_runs_project_live_start``, for the narrowest path, reads the
    project's every run and sorts them (100,000 runs, a filter and a metric sort: 660 ms,
    against 19 ms along the metric's index), statistics or not."""
    project = RunRow.project_id == project_id
    query = query.where(func.likely(project) if broad else project)
    if spec.experiment is not None:
        experiment_id = select(ExperimentRow.id).where(
            ExperimentRow.project_id == project_id,
            ExperimentRow.name == spec.experiment,
        )
        query = query.where(RunRow.experiment_id == experiment_id.scalar_subquery())
    if spec.experiment_ids:
        query = query.where(RunRow.experiment_id.in_(spec.experiment_ids))
    if spec.run_ids:
        query = query.where(RunRow.id.in_(spec.run_ids))
    if spec.parent_run_id is not None:
        query = query.where(RunRow.parent_run_id == spec.parent_run_id)
    elif folds(spec):
        top = RunRow.parent_run_id.is_(None)
        query = query.where(func.likely(top) if broad else top)
    if spec.lifecycle != "all":
        deleted = RunRow.deleted_at.is_not(None)
        kept = deleted if spec.lifecycle == "deleted" else ~deleted
        query = query.where(func.likely(kept) if broad else kept)
    if spec.status:
        query = query.where(RunRow.status.in_(spec.status))
    for flt in spec.filters:
        query = query.where(_filter(flt))
    return query


Key = tuple[Any, bool, bool]
"""A sort column: the column, whether it is descending, whether it may be NULL (last)."""


def _beyond(keys: list[Key], values: tuple[Any, ...], before: bool) -> ColumnElement[bool]:
    """The rows after (``before``: before) the row whose sort values are ``values``, in the
    order of ``keys`` (NULLs last in each). A non-NULL leading column also gets its plain
    bound, so the database reads its index from the cursor on instead of from the top."""
    (column, descending, nullable), value = keys[0], values[0]
    rest = keys[1:]
    if value is None:
        tail = _beyond(rest, values[1:], before)
        return (
            or_(column.is_not(None), and_(column.is_(None), tail))
            if before
            else and_(column.is_(None), tail)
        )
    onward = descending != before
    strictly: ColumnElement[bool] = column < value if onward else column > value
    if not rest:
        return strictly
    condition = or_(strictly, and_(column == value, _beyond(rest, values[1:], before)))
    if nullable:
        return condition if before else or_(condition, column.is_(None))
    bound = column <= value if onward else column >= value
    return and_(bound, condition)


def _ordered(keys: list[Key], before: bool) -> list[ColumnElement[Any]]:
    """ORDER BY for ``keys``; ``before`` reads the same order backwards."""
    if not before:
        return [_direction(column, descending, nullable) for column, descending, nullable in keys]
    backwards = [
        (column.asc() if descending else column.desc(), n) for column, descending, n in keys
    ]
    return [term.nulls_first() if nullable else term for term, nullable in backwards]


_TIE: list[Key] = [(RunRow.start_time, True, False), (RunRow.id, True, False)]


def _keys_of(spec: RunSearch, position: int | Keyset) -> tuple[Any, ...]:
    """A keyset's values typed for the query: datetimes for times, floats for metrics.

    Raises:
        ValidationError: they are not this order's (a cursor from another search).
    """
    if isinstance(position, int):
        return ()
    kinds = [_value_kind(o) for o in spec.order_by] + ["time", "text"]
    values = position.values
    try:
        if len(values) != len(kinds):
            raise ValueError(values)
        return tuple(_typed(kind, value) for kind, value in zip(kinds, values, strict=True))
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            "invalid cursor: it is from a search with another order; start from the first page",
            details={"field": "cursor"},
        ) from exc


def _value_kind(order: KeyOrder | AttributeOrder) -> str:
    if order.kind == "metric":
        return "number"
    return "time" if order.key in ("start_time", "end_time") else "text"


def _typed(kind: str, value: Any) -> Any:
    if value is None and kind != "text":
        return None
    if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "time" and isinstance(value, str):
        return datetime.fromisoformat(value)
    if kind == "text" and isinstance(value, str):
        return value
    raise ValueError(value)


def _page_query(project_id: str, spec: RunSearch, position: int | Keyset) -> Select[Any]:
    query = _where(select(RunRow.id), project_id, spec)
    keys: list[Key] = []
    for i, key in enumerate(spec.order_by):
        query, column = _sort_key(query, key)
        query = query.add_columns(column.label(f"k{i}"))
        keys.append((column, key.descending, True))
    query = query.add_columns(RunRow.start_time.label("start"))
    keys += _TIE
    if isinstance(position, int):
        return query.order_by(*_ordered(keys, False)).offset(position).limit(spec.limit + 1)
    query = query.where(_beyond(keys, _keys_of(spec, position), position.before))
    return query.order_by(*_ordered(keys, position.before)).limit(spec.limit + 1)


SMALL_PROJECT = 5000
"""Below this many runs a project's page is sorted in one query: the index walk of
``_by_one_metric`` crosses every project's runs with the metric, which a small project in a
large store would pay for."""


def _large(session: Session, project_id: str) -> bool:
    """Whether the project has at least ``SMALL_PROJECT`` runs (reads at most that many
    index entries)."""
    some = select(RunRow.id).where(RunRow.project_id == project_id).limit(SMALL_PROJECT).subquery()
    return (session.scalar(select(func.count()).select_from(some)) or 0) >= SMALL_PROJECT


Picked = list[tuple[Any, ...]]
"""The page's runs as (id, sort values..., start time), in the page's order."""


def _sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _by_one_metric(
    session: Session, project_id: str, spec: RunSearch, position: int | Keyset
) -> Picked:
    """The page's runs when the order is one latest metric, in two index-friendly steps.

    The runs with the metric (not NaN) come first: read from ``latest_metrics`` along its
    ``(key, value)`` index, so the database stops after the page instead of joining and
    sorting every run of the project (100,000 runs: seconds, against milliseconds). The
    runs without it follow, newest first, read only when the first part ends on this page.
    The order is the one ``_page_query`` gives: missing and NaN last, then newest first.
    """
    if isinstance(position, Keyset):
        return _one_metric_keyset(session, project_id, spec, position)
    order = spec.order_by[0]
    lm = aliased(LatestMetricRow)
    offset, wanted = position, spec.limit + 1
    has_metric = and_(lm.run_id == RunRow.id, lm.key == order.key, lm.is_nan.is_(False))
    value = lm.value.desc() if order.descending else lm.value.asc()
    picked_with = select(RunRow.id, lm.value, RunRow.start_time).join(lm, has_metric)
    first = (
        _where(picked_with, project_id, spec, broad=_sqlite(session))
        .order_by(value, RunRow.start_time.desc(), RunRow.id.desc())
        .offset(offset)
        .limit(wanted)
    )
    found: Picked = [tuple(row) for row in session.execute(first)]
    if len(found) == wanted:
        return found
    if found:
        with_metric = offset + len(found)
    else:
        counted = _where(
            select(func.count()).select_from(RunRow).join(lm, has_metric), project_id, spec
        )
        with_metric = session.scalar(counted) or 0
    without = (
        _where(select(RunRow.id, null().label("value"), RunRow.start_time), project_id, spec)
        .where(~exists().where(has_metric))
        .order_by(RunRow.start_time.desc(), RunRow.id.desc())
        .offset(max(0, offset - with_metric))
        .limit(wanted - len(found))
    )
    return found + [tuple(row) for row in session.execute(without)]


def _one_metric_keyset(session: Session, project_id: str, spec: RunSearch, at: Keyset) -> Picked:
    """``_by_one_metric`` from a keyset: the part the cursor is in from the cursor on, then
    the other part from its start (backwards for a ``before`` cursor: the runs without the
    metric first, then those with it, and the whole read reversed)."""
    order = spec.order_by[0]
    values = _keys_of(spec, at)
    lm = aliased(LatestMetricRow)
    has_metric = and_(lm.run_id == RunRow.id, lm.key == order.key, lm.is_nan.is_(False))
    with_keys = [(lm.value, order.descending, False), *_TIE]
    with_metric = _where(
        select(RunRow.id, lm.value, RunRow.start_time).join(lm, has_metric),
        project_id,
        spec,
        broad=_sqlite(session),
    ).order_by(*_ordered(with_keys, at.before))
    without = (
        _where(select(RunRow.id, null().label("value"), RunRow.start_time), project_id, spec)
        .where(~exists().where(has_metric))
        .order_by(*_ordered(_TIE, at.before))
    )
    in_metric = values[0] is not None
    first, other = (with_metric, without) if in_metric else (without, with_metric)
    keys, start = (with_keys, values) if in_metric else (_TIE, values[1:])
    # Forwards, the runs without the metric follow those with it; backwards, the reverse.
    parts = [first.where(_beyond(keys, start, at.before))]
    if in_metric != at.before:
        parts.append(other)
    found: Picked = []
    for part in parts:
        if len(found) <= spec.limit:
            found += [
                tuple(row) for row in session.execute(part.limit(spec.limit + 1 - len(found)))
            ]
    return found


def _aggregate(session: Session, table: Any, value: Any, label: str) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        agg = func.json_object_agg(table.key, value)
    else:
        agg = func.json_group_object(table.key, value)
    return select(agg).where(table.run_id == RunRow.id).scalar_subquery().label(label)


def _child_count(spec: RunSearch) -> Any:
    """How many child runs each run has, in the search's lifecycle (along the index on
    ``parent_run_id``)."""
    child = aliased(RunRow)
    counted = select(func.count()).where(child.parent_run_id == RunRow.id)
    if spec.lifecycle != "all":
        deleted = child.deleted_at.is_not(None)
        counted = counted.where(deleted if spec.lifecycle == "deleted" else ~deleted)
    return counted.scalar_subquery().label("children")


def _metric_text(session: Session) -> ColumnElement[Any]:
    # Sent as text so no JSON encoder rounds it: SQLite's JSON keeps 15 digits of a double,
    # its printf 16 unless the '!' flag asks for more; 17 significant digits round-trip.
    lm = LatestMetricRow
    if session.get_bind().dialect.name == "postgresql":
        text: ColumnElement[Any] = cast(lm.value, Text)
    else:
        text = func.printf("%!.17g", lm.value)
    return case((lm.is_nan.is_(True), None), else_=text)


def _decode(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def _read(session: Session, project_id: str, spec: RunSearch, at: int | Keyset) -> list[Any]:
    """Up to ``limit + 1`` rows (the run, its experiment, the asked aggregates, then its
    sort values and start time), in reading order: backwards from a ``before`` cursor."""
    columns: list[Any] = [RunRow, ExperimentRow.name]
    if "params" in spec.include:
        columns.append(_aggregate(session, ParamRow, ParamRow.value, "params"))
    if "metrics" in spec.include:
        columns.append(_aggregate(session, LatestMetricRow, _metric_text(session), "metrics"))
    if "tags" in spec.include:
        columns.append(_aggregate(session, RunTagRow, RunTagRow.value, "tags"))
    if folds(spec):
        columns.append(_child_count(spec))
    query = select(*columns).join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id)
    one_metric = len(spec.order_by) == 1 and spec.order_by[0].kind == "metric"
    if one_metric and _large(session, project_id):
        picked = {p[0]: p for p in _by_one_metric(session, project_id, spec, at)}
        position = {run_id: i for i, run_id in enumerate(picked)}
        found = session.execute(query.where(RunRow.id.in_(list(picked)))).all() if picked else []
        ordered = sorted(found, key=lambda row: position[row[0].id])
        return [(*row, *picked[row[0].id][1:]) for row in ordered]
    page = _page_query(project_id, spec, at).subquery("page")
    keys: list[Key] = [(page.c[f"k{i}"], o.descending, True) for i, o in enumerate(spec.order_by)]
    keys += [(page.c.start, True, False), (RunRow.id, True, False)]
    sort_values = [page.c[f"k{i}"] for i in range(len(spec.order_by))] + [page.c.start]
    query = query.add_columns(*sort_values).join(page, page.c.id == RunRow.id)
    before = isinstance(at, Keyset) and at.before
    return list(session.execute(query.order_by(*_ordered(keys, before))).all())


def _position(spec: RunSearch) -> int | Keyset:
    at = read_cursor(spec.cursor)
    if isinstance(at, Keyset) and not keyset_order(spec):
        raise ValidationError(
            "invalid cursor: sorted by a param or a tag, the search pages by row offset",
            details={"field": "cursor"},
        )
    return at


def search(session: Session, project: str, spec: RunSearch) -> RunPage:
    """One page of a project's runs matching ``spec``, in its order, newest first on ties.

    Orders by metrics and attributes page by keyset: ``next_cursor`` holds the last run's
    sort values and the next page starts after them, so page 1,800 costs what page 2 does
    (an offset reads and skips every run before it). A row offset still jumps (``page=N``).

    Raises:
        NotFoundError: no such project.
        ValidationError: a bad cursor, or a keyset cursor from another order.
    """
    at = _position(spec)
    project_id = experiments.project_id(session, project)
    rows = _read(session, project_id, spec, at)
    before = isinstance(at, Keyset) and at.before
    if before and len(rows) <= spec.limit:
        # Less than a page before the cursor: that is the first page.
        return search(session, project, spec.model_copy(update={"cursor": None}))
    page = rows[: spec.limit][::-1] if before else rows[: spec.limit]
    offset = at if isinstance(at, int) else at.offset
    made = RunPage(items=[_to_run(project, spec, row) for row in page], offset=offset)
    if page and (before or len(rows) > spec.limit):
        made.next_cursor = _cursor(spec, page[-1], offset + spec.limit, before=False)
    if page and (offset > 0 or isinstance(at, Keyset)):
        made.prev_cursor = _cursor(spec, page[0], max(0, offset - spec.limit), before=True)
    elif offset > 0:  # beyond the end: back one page
        made.prev_cursor = str(max(0, offset - spec.limit))
    return made


def _cursor(spec: RunSearch, row: Any, offset: int, *, before: bool) -> str:
    """The cursor of the page after (``before``: before) ``row``: a keyset of its sort
    values and id, or the row offset of that page when the order is not keyed."""
    if not keyset_order(spec):
        return str(offset)
    width = len(spec.order_by) + 1
    values = [v.isoformat() if isinstance(v, datetime) else v for v in row[-width:]]
    return keyset_cursor(Keyset(values=(*values, row[0].id), before=before, offset=offset))


def _to_run(project: str, spec: RunSearch, row: Any) -> Run:
    extra: dict[str, Any] = {}
    position = 2
    for part in ("params", "metrics", "tags"):
        if part in spec.include:
            extra[part] = _decode(row[position])
            position += 1
    if folds(spec):
        extra["children"] = int(row[position])
    if "metrics" in extra:
        extra["metrics"] = {
            k: float("nan") if v is None else float(v) for k, v in extra["metrics"].items()
        }
    return runs.to_domain(row[0], project, row[1], **extra)
