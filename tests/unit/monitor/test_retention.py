"""Retention of raw prediction-log and feedback rows (``monitor.prediction_retention_days``):
old rows leave the lake tables, the windows made from them stay, and rows the monitor has
not counted yet are never deleted (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loopml.core.deployments import feedback_table, prediction_table
from loopml.core.errors import ValidationError
from loopml.core.predictions import FeedbackItem
from loopml.data import housekeeping, lake
from loopml.faces.context import AppContext
from loopml.monitor.engine import Monitor
from loopml.monitor.retention import prune_deployment
from loopml.predictions.feedback import feedback_records
from loopml.settings import MonitorSettings
from loopml.store import deployments, events
from loopml.store import monitor as rows
from tests.unit.monitor.test_engine import _log_rows


def _settings(ctx: AppContext, days: float) -> MonitorSettings:
    update = {
        "lag_s": 0,
        "default_rules": [],
        "backfill_s": 30 * 86_400.0,
        "label_horizon_s": 3600.0,
        "prediction_retention_days": days,
    }
    return ctx.settings.monitor.model_copy(update=update)


def _labels(ctx: AppContext, ids: list[str], received_at: datetime) -> None:
    items = [FeedbackItem(inference_id=i, label=1) for i in ids]
    table = feedback_records(items, received_at)
    lake.ingest_arrow(
        ctx.store, ctx.artifacts, "default", feedback_table("churn-api"), table, actor="t"
    )


def _left(ctx: AppContext, table: str, column: str) -> list[Any]:
    read = lake.read_dataset(ctx.store, ctx.artifacts, "default", table).to_table()
    return sorted(read.column(column).to_pylist())


def _windows(ctx: AppContext) -> list[tuple[Any, ...]]:
    with ctx.store.session() as session:
        found = rows.list_windows(session, "default", "churn-api", size="1h")
    return [(w["start"], w["rows"], w["labels"], w["state"], w["summary"]) for w in found]


def test_rows_past_retention_go_and_the_windows_stay(store_ctx: AppContext) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    _log_rows(
        store_ctx, "churn-api", [now - timedelta(days=3)] * 2 + [now - timedelta(hours=2)] * 3
    )
    _labels(store_ctx, ["req-0"], now - timedelta(days=3))
    _labels(store_ctx, ["req-2"], now - timedelta(hours=2))
    counting = Monitor(
        store_ctx.store, store_ctx.artifacts, _settings(store_ctx, 0), clock=lambda: now
    )
    assert counting.tick().rows == 5  # retention off: nothing deleted
    assert len(_left(store_ctx, prediction_table("churn-api"), "inference_id")) == 5
    counted = _windows(store_ctx)
    assert sum(w[1] for w in counted) == 5
    counting.stop()

    later = now + timedelta(seconds=1)
    pruning = Monitor(
        store_ctx.store, store_ctx.artifacts, _settings(store_ctx, 1), clock=lambda: later
    )
    report = pruning.tick()
    assert "predictions.pruned" in report.events
    assert _left(store_ctx, prediction_table("churn-api"), "inference_id") == [
        "req-2",
        "req-3",
        "req-4",
    ]
    assert _left(store_ctx, feedback_table("churn-api"), "inference_id") == ["req-2"]
    assert _windows(store_ctx) == counted
    with store_ctx.store.session() as session:
        [event] = events.list_(session, type="predictions.pruned").items
        pruned = events.list_(session, type="table.pruned").items
    assert (event.subject, event.payload["predictions"], event.payload["feedback"]) == (
        "churn-api",
        2,
        1,
    )
    assert {e.subject for e in pruned} == {"churn_api__predictions", "churn_api__feedback"}
    table = lake.get_table(
        store_ctx.store, store_ctx.artifacts, "default", prediction_table("churn-api")
    )
    assert table.row_count == 3
    # Within the hour, no second pass: nothing more to do, and nothing done.
    assert "predictions.pruned" not in pruning.tick().events


def test_rows_the_monitor_has_not_counted_are_never_pruned(store_ctx: AppContext) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    _log_rows(store_ctx, "churn-api", [now - timedelta(days=6), now - timedelta(days=3)])
    _labels(store_ctx, ["req-0"], now - timedelta(days=6))
    _labels(store_ctx, ["req-1"], now - timedelta(days=3))
    settings = _settings(store_ctx, 1)
    with store_ctx.store.session() as session:
        deployment = deployments.get(session, "default", "churn-api")
    prune = prune_deployment  # loopml's own, run by the monitor once an hour

    # Never read: every row stays.
    assert (
        prune(store_ctx.store, store_ctx.artifacts, settings, deployment, {}, now, actor="t")
        is None
    )
    # Read up to five days ago: the rows of three days ago are older than one day, but not
    # counted yet; they stay.
    mark = (now - timedelta(days=5)).isoformat()
    watermark = {"predictions": mark, "feedback": mark}
    done = prune(
        store_ctx.store, store_ctx.artifacts, settings, deployment, watermark, now, actor="t"
    )
    assert done is not None
    assert (done["predictions"], done["feedback"]) == (1, 1)
    assert _left(store_ctx, prediction_table("churn-api"), "inference_id") == ["req-1"]
    assert _left(store_ctx, feedback_table("churn-api"), "inference_id") == ["req-1"]


def test_predictions_a_late_label_may_still_join_are_kept(store_ctx: AppContext) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    _log_rows(store_ctx, "churn-api", [now - timedelta(days=3)])
    settings = _settings(store_ctx, 1).model_copy(update={"label_horizon_s": 7 * 86_400.0})
    with store_ctx.store.session() as session:
        deployment = deployments.get(session, "default", "churn-api")
    watermark = {"predictions": now.isoformat(), "feedback": now.isoformat()}
    args = (store_ctx.store, store_ctx.artifacts, settings, deployment, watermark, now)
    assert prune_deployment(*args, actor="t") is None  # a label may come for 7 days
    assert _left(store_ctx, prediction_table("churn-api"), "inference_id") == ["req-0"]


def test_a_prune_by_a_column_that_is_no_timestamp_is_refused(store_ctx: AppContext) -> None:
    _log_rows(store_ctx, "churn-api", [datetime.now(UTC)])
    for column in ("inputs", "missing", "ts < now() or ts"):
        with pytest.raises(ValidationError, match="no timestamp column"):
            housekeeping.prune(
                store_ctx.store,
                store_ctx.artifacts,
                "default",
                prediction_table("churn-api"),
                column=column,
                before=datetime.now(UTC),
                actor="t",
            )
    assert len(_left(store_ctx, prediction_table("churn-api"), "inference_id")) == 1
