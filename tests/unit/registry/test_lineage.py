"""Lineage both ways, in a fixed number of queries."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.registry import LineageInput
from loopml.registry import input_lineage, register_version, version_lineage
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, projects
from tests.tracking_rows import Run, log_model, make_run


def _trained(store: MetadataStore, artifacts: ArtifactStore, model: str, run: Run) -> int:
    log_model(store, artifacts, run)
    version = register_version(
        store, artifacts, project=run.project, model_name=model, run_id=run.id, actor="a"
    )
    return version.version


def test_version_to_run_to_inputs(store: MetadataStore, artifacts: ArtifactStore) -> None:
    run = make_run(store, inputs=(("dataset", "snap-1"), ("dataset", "snap-2")))
    _trained(store, artifacts, "churn", run)
    lineage = version_lineage(store, "default", "churn/1")
    assert lineage.version.version == 1
    assert (lineage.run.id, lineage.run.status) == (run.id, "FINISHED")
    assert [(i.kind, i.ref) for i in lineage.inputs] == [
        ("dataset", "snap-1"),
        ("dataset", "snap-2"),
    ]
    assert all(i.upstream == [] for i in lineage.inputs)


def test_expanders_fill_upstream_once_per_kind(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    run = make_run(
        store, inputs=(("dataset", "snap-1"), ("code", "git:abc"), ("dataset", "snap-2"))
    )
    _trained(store, artifacts, "churn", run)
    calls: list[list[str]] = []

    def tables(session: Session, inputs: Sequence[LineageInput]) -> list[LineageInput]:
        calls.append([i.ref for i in inputs])
        table = LineageInput(kind="table_version", ref="sales@7")
        return [i.model_copy(update={"upstream": [table]}) for i in inputs]

    lineage = version_lineage(store, "default", "churn", expanders={"dataset": tables})
    assert calls == [["snap-1", "snap-2"]]
    by_ref = {i.ref: i for i in lineage.inputs}
    assert by_ref["snap-1"].upstream[0].ref == "sales@7"
    assert by_ref["git:abc"].upstream == []


def test_input_to_runs_to_versions(store: MetadataStore, artifacts: ArtifactStore) -> None:
    with store.session() as session:
        projects.create(session, "other", actor="a")
    used = [make_run(store, inputs=(("dataset", "snap-1"),)) for _ in range(3)]
    unrelated = make_run(store, inputs=(("dataset", "snap-2"),))
    elsewhere = make_run(store, "other", inputs=(("dataset", "snap-1"),))
    _trained(store, artifacts, "churn", used[0])
    _trained(store, artifacts, "fraud", used[1])
    _trained(store, artifacts, "churn", unrelated)
    _trained(store, artifacts, "churn", elsewhere)
    queries: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        queries.append(statement)

    engine = store._engine  # counting statements is the point of this test
    event.listen(engine, "before_cursor_execute", count)
    try:
        result = input_lineage(store, "default", "dataset", "snap-1")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert [r.id for r in result.runs] == [r.id for r in used]
    assert [(v.model, v.version, v.run_id) for v in result.versions] == [
        ("churn", 1, used[0].id),
        ("fraud", 1, used[1].id),
    ]
    # project, runs, versions, their tags, their aliases: never one per row.
    assert len([q for q in queries if q.lstrip().upper().startswith("SELECT")]) <= 5


def test_lineage_errors_name_what_is_missing(store: MetadataStore) -> None:
    with pytest.raises(NotFoundError, match="model 'churn' not found"):
        version_lineage(store, "default", "churn/1")
    with pytest.raises(ValidationError, match="input_ref"):
        input_lineage(store, "default", "dataset", "x" * 301)
    with pytest.raises(NotFoundError, match="project 'ghost'"):
        input_lineage(store, "ghost", "dataset", "snap")
    assert input_lineage(store, "default", "dataset", "never").runs == []
