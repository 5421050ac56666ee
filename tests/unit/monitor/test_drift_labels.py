"""A drift-started retrain waits for its labels: the episode emits ``drift.labelled`` once
``drift_min_labels`` labels have joined the drifted version's predictions since it began,
and a trigger on it starts the retrain then, whether the labels came 10 s or 10 minutes
after the shift. The monitor's and the automation engine's clocks are the test's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from loopml.monitor.reference import save_reference
from loopml.pipelines import automation_service, service
from loopml.pipelines.automation import AutomationEngine
from loopml.store import events
from loopml.web.context import AppContext
from tests.unit.monitor.logged import log_labels, log_predictions, monitor_at
from tests.unit.monitor.test_episodes import ROWS, _frame, _reference

RETRAIN = """\
name: retrain-on-labels
steps:
  - name: labelled
    uses: labelled
    with: {deployment: churn-api}
"""


def _labelled_events(ctx: AppContext) -> list[dict[str, object]]:
    with ctx.store.session() as session:
        return [e.payload for e in events.list_(session, type="drift.labelled").items]


def _runs(ctx: AppContext) -> list[str]:
    found = service.list_runs(ctx.store, "default", pipeline="retrain-on-labels").items
    return [run.actor for run in found]


@pytest.mark.parametrize("delay", [timedelta(seconds=10), timedelta(minutes=10)])
def test_a_retrain_on_drift_starts_once_the_labels_land(
    store_ctx: AppContext, delay: timedelta
) -> None:
    rng = np.random.default_rng(7)
    save_reference(store_ctx.store, "default", "churn", 1, _reference(rng))
    service.apply_spec(store_ctx.store, "default", RETRAIN, actor="t")
    automation_service.create_trigger(
        store_ctx.store,
        "default",
        name="on-drift",
        pipeline="retrain-on-labels",
        on="drift.labelled",
        where={"deployment": "churn-api"},
        actor="t",
    )
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    shift = hour + timedelta(minutes=10)
    clock = [shift]
    monitor = monitor_at(store_ctx, clock, drift_min_labels=150)
    engine = AutomationEngine(store_ctx.store, clock=lambda: clock[0])

    def round_at(moment: datetime) -> list[str]:
        clock[0] = moment
        emitted = monitor.tick().events
        engine.tick()
        return emitted

    frame = _frame(rng, ROWS, shift_b=2.0)
    keys = log_predictions(store_ctx, "churn-api", frame, shift, [1] * ROWS, prefix="s")
    # The labels of 200 shifted rows come back `delay` after the shift.
    log_labels(store_ctx, "churn-api", keys[:200], [0] * 200, shift + delay)

    first = round_at(shift + timedelta(minutes=1))
    if delay < timedelta(minutes=1):
        # Drift seen and its labels in: the retrain starts on the same round.
        assert first == ["drift.detected", "drift.labelled"]
        assert _runs(store_ctx) == ["trigger:on-drift"]
    else:
        # Drift seen before its labels: nothing retrains yet (it would learn nothing new).
        assert first == ["drift.detected"]
        assert _runs(store_ctx) == []
        assert round_at(shift + timedelta(minutes=5)) == []
        assert _runs(store_ctx) == []
        # The labels land: the episode, though open for 10 minutes, starts the retrain.
        assert round_at(shift + delay + timedelta(minutes=1)) == ["drift.labelled"]
        assert _runs(store_ctx) == ["trigger:on-drift"]
    [labelled] = _labelled_events(store_ctx)
    assert labelled == {
        "deployment": "churn-api",
        "model": "churn",
        "version": 1,
        "since": hour.isoformat(),
        "labels": 200,
        "min_labels": 150,
    }
    # Once per episode: more labels and rounds start nothing more.
    log_labels(store_ctx, "churn-api", keys[200:400], [0] * 200, shift + timedelta(minutes=20))
    assert round_at(shift + timedelta(minutes=30)) == []
    assert _runs(store_ctx) == ["trigger:on-drift"]
