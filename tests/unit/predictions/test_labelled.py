"""A deployment's labelled predictions: its prediction log joined with its feedback by the
transform machinery, inputs as typed columns, the label, the version that answered, and
each row's inference id; refreshed as more labels land."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.pipelines import PipelineRun
from loopml.data import lake, transforms
from loopml.data.sources import materialize
from loopml.faces.context import AppContext
from loopml.platform.startup import build_context
from loopml.predictions.labelled import LINEAGE_COLUMNS, refresh
from loopml.settings import Settings
from tests.unit.api.test_feedback import make_deployment
from tests.unit.monitor.logged import log_labels, log_predictions

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    home = tmp_path / "home"
    settings = Settings(home=home, database={"url": f"sqlite:///{tmp_path / 'loopml.db'}"})
    built = build_context(settings)
    built.store.upgrade()
    make_deployment(built, "churn-api")
    yield built
    built.store.dispose()


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tenure": [1, 5, 12, 30, 2, 7],
            "charges": [20.5, 35.0, 70.25, 99.9, 15.0, 42.0],
            "plan": ["basic", "pro", "pro", "max", "basic", "pro"],
            "active": [True, False, True, True, False, True],
        }
    )


def _rows(ctx: AppContext, table: str) -> list[dict[str, object]]:
    found = materialize(ctx.store, ctx.artifacts, "default", f"SELECT * FROM {table}")
    return found.table.to_pylist()


def test_labelled_rows_have_typed_inputs_the_label_and_their_inference_id(
    ctx: AppContext,
) -> None:
    keys = log_predictions(ctx, "churn-api", _frame(), T0, [0, 1, 1, 0, 0, 1], batch=2)
    # Four rows labelled; the second row twice: its newest label counts.
    log_labels(ctx, "churn-api", keys[:4], [1, 0, 1, 0], T0 + timedelta(minutes=5))
    log_labels(ctx, "churn-api", [keys[1]], [1], T0 + timedelta(minutes=9))

    made = refresh(ctx.store, ctx.artifacts, "default", "churn-api", target="churned", actor="t")

    assert made.table == "churn_api__labelled@0"
    assert made.run.rows == 4
    schema = lake.get_table(ctx.store, ctx.artifacts, "default", "churn_api__labelled").columns
    assert [(c.name, c.type) for c in schema] == [
        ("tenure", "int64"),
        ("charges", "double"),
        ("plan", "string"),
        ("active", "bool"),
        ("churned", "int64"),
        ("inference_id", "string"),
        ("row_index", "int64"),
        ("model", "string"),
        ("model_version", "int64"),
        ("predicted_at", "timestamp[us]"),
        ("labelled_at", "timestamp[us]"),
    ]
    rows = _rows(ctx, "churn_api__labelled")
    assert [(r["inference_id"], r["row_index"]) for r in rows] == keys[:4]
    assert [r["churned"] for r in rows] == [1, 1, 1, 0]
    assert [r["tenure"] for r in rows] == [1, 5, 12, 30]
    assert [r["plan"] for r in rows] == ["basic", "pro", "pro", "max"]
    assert rows[0]["charges"] == 20.5
    assert rows[1]["active"] is False
    assert {(r["model"], r["model_version"]) for r in rows} == {("churn", 1)}
    assert rows[0]["predicted_at"] == T0.replace(tzinfo=None)
    assert rows[1]["labelled_at"] == (T0 + timedelta(minutes=9)).replace(tzinfo=None)

    # The lineage: the transform run read the exact log and feedback versions.
    assert sorted(str(v) for v in made.run.inputs) == [
        "churn_api__feedback@1",
        "churn_api__predictions@0",
    ]
    produced = transforms.produced_by(ctx.store, ctx.artifacts, "default", "churn_api__labelled", 0)
    assert produced is not None
    assert produced.id == made.run.id

    # What a snapshot trains on: the inputs and the label, no lineage column.
    training = materialize(ctx.store, ctx.artifacts, "default", made.training_sql).table
    assert training.column_names == ["tenure", "charges", "plan", "active", "churned"]
    assert not set(LINEAGE_COLUMNS) & set(training.column_names)


def test_labels_that_land_later_join_on_the_next_refresh(ctx: AppContext) -> None:
    keys = log_predictions(ctx, "churn-api", _frame(), T0, [0] * 6, batch=3)
    log_labels(ctx, "churn-api", keys[:2], ["yes", "no"], T0 + timedelta(seconds=10))
    first = refresh(ctx.store, ctx.artifacts, "default", "churn-api", actor="t")
    assert first.run.rows == 2
    assert [r["label"] for r in _rows(ctx, first.table)] == ["yes", "no"]

    log_labels(ctx, "churn-api", keys[2:], ["no"] * 4, T0 + timedelta(minutes=10))
    second = refresh(ctx.store, ctx.artifacts, "default", "churn-api", actor="t")
    assert second.table == "churn_api__labelled@1"
    assert second.run.rows == 6
    assert [r["label"] for r in _rows(ctx, second.table)] == ["yes", "no"] + ["no"] * 4


def test_no_label_yet_and_a_taken_column_name_say_what_to_do(ctx: AppContext) -> None:
    log_predictions(ctx, "churn-api", _frame(), T0, [0] * 6)
    with pytest.raises(NotFoundError, match=r"'churn_api': no label sent back yet"):
        refresh(ctx.store, ctx.artifacts, "default", "churn-api", actor="t")
    log_labels(ctx, "churn-api", [("req-0", 0)], [1], T0)
    with pytest.raises(ValidationError, match=r"'tenure' is taken by an input"):
        refresh(ctx.store, ctx.artifacts, "default", "churn-api", target="tenure", actor="t")


SPEC = """\
name: from-labels
steps:
  - name: labelled
    uses: labelled
    with: {deployment: churn-api, target: churned}
  - name: snapshot
    uses: snapshot
    with:
      dataset: churn_train
      from: ${{ steps.labelled.outputs.training }}
"""


def test_a_pipeline_snapshots_the_labelled_rows_as_its_training_data(
    ctx: AppContext,
) -> None:
    from loopml.data.datasets import get_version
    from loopml.pipelines import service
    from tests.unit.pipelines.conftest import running_worker, step_of, wait_run

    keys = log_predictions(ctx, "churn-api", _frame(), T0, [0] * 6, batch=2)
    log_labels(ctx, "churn-api", keys, [0, 1, 0, 1, 1, 0], T0 + timedelta(seconds=10))
    service.apply_spec(ctx.store, "default", SPEC, actor="t")
    with running_worker(ctx.store, ctx.artifacts, ctx.settings):
        started = service.start_run(ctx.store, "default", "from-labels", {}, actor="t")
        run = wait_run(ctx.store, started.id, timeout_s=120)
    assert run.error is None, run.error
    outputs = step_of(run, "labelled").outputs
    assert outputs["table"] == "churn_api__labelled@0"
    assert outputs["rows"] == 6
    assert outputs["training"].startswith("SELECT * EXCLUDE (inference_id, row_index")
    made = get_version(ctx.store, "default", step_of(run, "snapshot").outputs["dataset"])
    assert made.row_count == 6
    assert [c.name for c in made.columns] == ["tenure", "charges", "plan", "active", "churned"]
    # The training rows trace back through the labelled table to the log and the labels.
    assert [(s.table, s.version) for s in made.sources] == [("churn_api__labelled", 0)]


SINCE = """\
name: since-drift
inputs:
  since: {type: string, default: drift}
steps:
  - name: labelled
    uses: labelled
    with: {deployment: churn-api, target: churned, since: "${{ inputs.since }}"}
  - name: snapshot
    uses: snapshot
    with:
      dataset: churn_recent
      from: ${{ steps.labelled.outputs.training }}
"""


def test_after_a_drift_the_pipeline_learns_from_the_answers_made_since_its_onset(
    ctx: AppContext,
) -> None:
    """The old relation's labelled answers stay in the table but are not trained on: the
    step reads the onset from the deployment's newest ``drift.labelled`` (another
    deployment's, newer, is not its); a time or an empty ``since`` is taken as given."""
    from loopml.data.datasets import get_version
    from loopml.pipelines import service
    from loopml.store import events
    from tests.unit.pipelines.conftest import running_worker, step_of, wait_run

    frame = _frame()
    old = log_predictions(ctx, "churn-api", frame.iloc[:4], T0, [0] * 4, prefix="old", batch=2)
    onset = T0 + timedelta(minutes=30)
    new = log_predictions(ctx, "churn-api", frame.iloc[4:], onset, [1] * 2, prefix="new")
    log_labels(ctx, "churn-api", old + new, [0, 0, 0, 0, 1, 1], onset + timedelta(minutes=5))
    with ctx.store.session() as session:
        for deployment, since in (("churn-api", onset), ("other-api", T0 - timedelta(days=1))):
            payload = {"deployment": deployment, "since": since.isoformat(), "labels": 2}
            events.append(
                session, type="drift.labelled", subject=deployment, project="default",
                payload=payload, actor="monitor",
            )  # fmt: skip
    service.apply_spec(ctx.store, "default", SINCE, actor="t")

    def run_with(since: str) -> PipelineRun:
        with running_worker(ctx.store, ctx.artifacts, ctx.settings):
            inputs = {"since": since}
            started = service.start_run(ctx.store, "default", "since-drift", inputs, actor="t")
            return wait_run(ctx.store, started.id, timeout_s=120)

    run = run_with("drift")
    assert run.error is None, run.error
    outputs = step_of(run, "labelled").outputs
    assert (outputs["rows"], outputs["training_rows"]) == (6, 2)
    assert outputs["since"] == onset.isoformat()
    made = get_version(ctx.store, "default", step_of(run, "snapshot").outputs["dataset"])
    assert made.row_count == 2

    everything = step_of(run_with(""), "labelled").outputs
    assert (everything["training_rows"], everything["since"]) == (6, "")
    later = run_with((onset + timedelta(minutes=1)).isoformat())
    assert later.error is not None
    assert "no labelled answer of 'churn-api' was made since" in later.error
    assert "(6 before it)" in later.error
    wrong = run_with("yesterday")
    assert wrong.error is not None
    assert "invalid since 'yesterday': expected drift, an ISO 8601 time" in wrong.error
