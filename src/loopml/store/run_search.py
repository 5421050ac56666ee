"""Run search: filter and sort a project's runs by latest metrics, params, tags and
attributes, one SQL query per page.

The query has two levels. The inner one picks the page: it filters with ``EXISTS`` probes on
the primary keys of ``latest_metrics``, ``params`` and ``run_tags`` (``(run_id, key)``), sorts
through outer joins on the same keys, and applies ``LIMIT``/``OFFSET``. The outer one joins
the page's (at most 1,000) runs to their experiment and aggregates each run's params, latest
metrics and tags into JSON objects with correlated subqueries, so nothing is fetched per row
and the aggregates are computed only for the page, never for every matching run.

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
    select,
)
from sqlalchemy.orm import Session, aliased

from loopml.core.errors import ValidationError
from loopml.core.run_search import (
    CURSOR_PATTERN,
    AttributeOrder,
    KeyOrder,
    MetricFilter,
    RunSearch,
    TextFilter,
)
from loopml.core.runs import Run
from loopml.core.types import Page
from loopml.store import experiments, runs
from loopml.store.orm import ExperimentRow, LatestMetricRow, ParamRow, RunRow, RunTagRow

_OPS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_TABLES: dict[str, Any] = {"metric": LatestMetricRow, "param": ParamRow, "tag": RunTagRow}


def parse_offset(cursor: str | None) -> int:
    """The row offset a ``next_cursor`` stands for (``None`` is the first page)."""
    if cursor is None:
        return 0
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 9):
        raise ValidationError(
            f"invalid cursor {cursor[:80]!r}: pass the next_cursor of the previous page",
            details={"field": "cursor", "pattern": CURSOR_PATTERN},
        )
    return int(cursor)


def _filter(flt: MetricFilter | TextFilter) -> ColumnElement[bool]:
    table = aliased(_TABLES[flt.kind])
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


def _direction(column: Any, descending: bool) -> ColumnElement[Any]:
    ordered: ColumnElement[Any] = column.desc() if descending else column.asc()
    return ordered.nulls_last()


def _where(query: Select[Any], project: str, spec: RunSearch) -> Select[Any]:
    query = query.where(RunRow.project_id == runs.project_id_of(project))
    if spec.experiment is not None:
        experiment_id = select(ExperimentRow.id).where(
            ExperimentRow.project_id == runs.project_id_of(project),
            ExperimentRow.name == spec.experiment,
        )
        query = query.where(RunRow.experiment_id == experiment_id.scalar_subquery())
    if spec.experiment_ids:
        query = query.where(RunRow.experiment_id.in_(spec.experiment_ids))
    if spec.run_ids:
        query = query.where(RunRow.id.in_(spec.run_ids))
    if spec.lifecycle != "all":
        deleted = RunRow.deleted_at.is_not(None)
        query = query.where(deleted if spec.lifecycle == "deleted" else ~deleted)
    if spec.status:
        query = query.where(RunRow.status.in_(spec.status))
    for flt in spec.filters:
        query = query.where(_filter(flt))
    return query


def _page_query(project: str, spec: RunSearch) -> Select[Any]:
    query = _where(select(RunRow.id), project, spec)
    order: list[ColumnElement[Any]] = []
    for i, key in enumerate(spec.order_by):
        query, column = _sort_key(query, key)
        query = query.add_columns(column.label(f"k{i}"))
        order.append(_direction(column, key.descending))
    query = query.add_columns(RunRow.start_time.label("start"))
    order += [RunRow.start_time.desc(), RunRow.id.desc()]
    return query.order_by(*order).offset(parse_offset(spec.cursor)).limit(spec.limit + 1)


SMALL_PROJECT = 5000
"""Below this many runs a project's page is sorted in one query: the index walk of
``_by_one_metric`` crosses every project's runs with the metric, which a small project in a
large store would pay for."""


def _large(session: Session, project: str) -> bool:
    """Whether the project has at least ``SMALL_PROJECT`` runs (reads at most that many
    index entries)."""
    some = (
        select(RunRow.id)
        .where(RunRow.project_id == runs.project_id_of(project))
        .limit(SMALL_PROJECT)
        .subquery()
    )
    return (session.scalar(select(func.count()).select_from(some)) or 0) >= SMALL_PROJECT


def _by_one_metric(session: Session, project: str, spec: RunSearch) -> list[str]:
    """The page's run ids when the order is one latest metric, in two index-friendly steps.

    The runs with the metric (not NaN) come first: read from ``latest_metrics`` along its
    ``(key, value)`` index, so the database stops after the page instead of joining and
    sorting every run of the project (100,000 runs: seconds, against milliseconds). The
    runs without it follow, newest first, read only when the first part ends on this page.
    The order is the one ``_page_query`` gives: missing and NaN last, then newest first.
    """
    order = spec.order_by[0]
    lm = aliased(LatestMetricRow)
    offset, wanted = parse_offset(spec.cursor), spec.limit + 1
    has_metric = and_(lm.run_id == RunRow.id, lm.key == order.key, lm.is_nan.is_(False))
    value = lm.value.desc() if order.descending else lm.value.asc()
    first = (
        _where(select(RunRow.id).join(lm, has_metric), project, spec)
        .order_by(value, RunRow.start_time.desc(), RunRow.id.desc())
        .offset(offset)
        .limit(wanted)
    )
    ids = list(session.scalars(first))
    if len(ids) == wanted:
        return ids
    if ids:
        with_metric = offset + len(ids)
    else:
        counted = _where(
            select(func.count()).select_from(RunRow).join(lm, has_metric), project, spec
        )
        with_metric = session.scalar(counted) or 0
    without = (
        _where(select(RunRow.id), project, spec)
        .where(~exists().where(has_metric))
        .order_by(RunRow.start_time.desc(), RunRow.id.desc())
        .offset(max(0, offset - with_metric))
        .limit(wanted - len(ids))
    )
    return ids + list(session.scalars(without))


def _aggregate(session: Session, table: Any, value: Any, label: str) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        agg = func.json_object_agg(table.key, value)
    else:
        agg = func.json_group_object(table.key, value)
    return select(agg).where(table.run_id == RunRow.id).scalar_subquery().label(label)


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


def search(session: Session, project: str, spec: RunSearch) -> Page[Run]:
    """One page of a project's runs matching ``spec``, in its order, newest first on ties.

    Raises:
        NotFoundError: no such project.
        ValidationError: a bad cursor.
    """
    columns: list[Any] = [RunRow, ExperimentRow.name]
    if "params" in spec.include:
        columns.append(_aggregate(session, ParamRow, ParamRow.value, "params"))
    if "metrics" in spec.include:
        columns.append(_aggregate(session, LatestMetricRow, _metric_text(session), "metrics"))
    if "tags" in spec.include:
        columns.append(_aggregate(session, RunTagRow, RunTagRow.value, "tags"))
    query = select(*columns).join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id)
    one_metric = len(spec.order_by) == 1 and spec.order_by[0].kind == "metric"
    if one_metric and _large(session, project):
        ids = _by_one_metric(session, project, spec)
        position = {run_id: i for i, run_id in enumerate(ids)}
        found = session.execute(query.where(RunRow.id.in_(ids))).all() if ids else []
        rows: list[Any] = sorted(found, key=lambda row: position[row[0].id])
    else:
        page = _page_query(project, spec).subquery("page")
        order = [_direction(page.c[f"k{i}"], o.descending) for i, o in enumerate(spec.order_by)]
        query = query.join(page, page.c.id == RunRow.id).order_by(
            *order, page.c.start.desc(), RunRow.id.desc()
        )
        rows = list(session.execute(query).all())
    if not rows:
        experiments.project_id(session, project)  # a missing project says so
    items = [_to_run(project, spec, row) for row in rows[: spec.limit]]
    more = len(rows) > spec.limit
    next_cursor = str(parse_offset(spec.cursor) + spec.limit) if more else None
    return Page[Run](items=items, next_cursor=next_cursor)


def _to_run(project: str, spec: RunSearch, row: Any) -> Run:
    extra: dict[str, Any] = {}
    position = 2
    for part in ("params", "metrics", "tags"):
        if part in spec.include:
            extra[part] = _decode(row[position])
            position += 1
    if "metrics" in extra:
        extra["metrics"] = {
            k: float("nan") if v is None else float(v) for k, v in extra["metrics"].items()
        }
    return runs.to_domain(row[0], project, row[1], **extra)
