"""The runs table's two large-store reads keep to their index on SQLite, whose planner
otherwise picks paths that read and sort a project's every run:

- a page in the default order jumped to by its row offset skips entries of the covering
  index ``ix_runs_project_live_start``, never reading the runs or sorting the ties;
- a page sorted by one metric, with filters, walks ``latest_metrics``' ``(key, value)``
  index and stops after the page, rather than taking the project's runs from the runs
  index (two equalities there look narrower) and sorting them all.

Each page is also checked against the same order computed in Python."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from loopml.core.run_search import Children, RunFilter, RunOrder, RunSearch
from loopml.store import MetadataStore, run_search
from loopml.store.run_search import SMALL_PROJECT
from tests.portal_scale import fill_runs

RUNS = SMALL_PROJECT + 500  # past the size where a metric sort walks the metric's index


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetadataStore]:
    path: Path = tmp_path_factory.mktemp("plans") / "loopml.db"
    store = MetadataStore(f"sqlite:///{path}")
    store.upgrade()
    fill_runs(store, "default", RUNS, 4)
    yield store
    store.dispose()


def _plans(store: MetadataStore, spec: RunSearch) -> tuple[list[Any], list[str]]:
    """The page's runs and the query plan of each SELECT it ran."""
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, params))

    event.listen(store._engine, "before_cursor_execute", seen)
    try:
        with store.session() as session:
            page = run_search.search(session, "default", spec)
    finally:
        event.remove(store._engine, "before_cursor_execute", seen)
    plans = []
    with store._engine.connect() as connection:
        for statement, params in statements:
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", tuple(params))
            plans.append(" | ".join(str(row[3]) for row in rows))
    return page.items, plans


def _everything(store: MetadataStore) -> list[Any]:
    with store.session() as session:
        spec = RunSearch(limit=1000, include=["metrics", "params"])
        found, cursor = [], None
        while True:
            page = run_search.search(session, "default", spec.model_copy(update={"cursor": cursor}))
            found += page.items
            cursor = page.next_cursor
            if cursor is None:
                return found


@pytest.mark.parametrize(
    ("children", "index"),
    [("folded", "ix_runs_project_top_start"), ("flat", "ix_runs_project_live_start")],
)
def test_a_deep_page_by_offset_reads_the_covering_index_only(
    large: MetadataStore, children: Children, index: str
) -> None:
    offset = RUNS - 120
    spec = RunSearch(cursor=str(offset), limit=50, include=["metrics"], children=children)
    items, plans = _plans(large, spec)

    page_plan = next(p for p in plans if index in p)
    assert f"COVERING INDEX {index}" in page_plan, plans
    assert "TEMP B-TREE FOR RIGHT PART OF ORDER BY" not in page_plan, plans
    newest_first = sorted(_everything(large), key=lambda r: (r.start_time, r.id), reverse=True)
    assert [r.id for r in items] == [r.id for r in newest_first[offset : offset + 50]]


def test_a_filtered_page_sorted_by_a_metric_walks_the_metric_index(large: MetadataStore) -> None:
    spec = RunSearch(
        filters=[RunFilter.parse("metrics.m1 > 0.5"), RunFilter.parse("params.p0 = '3'")],
        order_by=[RunOrder.parse("metrics.m2 desc")],
        limit=20,
        include=["metrics"],
    )
    items, plans = _plans(large, spec)

    walk = next(p for p in plans if "latest_metrics_1" in p)
    assert walk.startswith("SEARCH latest_metrics_1 USING INDEX ix_latest_metrics_key_value"), plans
    # Ties of the metric's value are sorted by start time and id as they come ("RIGHT PART
    # OF ORDER BY"); never the whole page's candidates.
    assert "TEMP B-TREE FOR ORDER BY" not in walk, plans
    kept = [
        r
        for r in _everything(large)
        if r.metrics["m1"] > 0.5 and r.params is not None and r.params["p0"] == "3"
    ]
    kept.sort(key=lambda r: (r.metrics["m2"], r.start_time, r.id), reverse=True)
    assert [r.id for r in items] == [r.id for r in kept[:20]]
