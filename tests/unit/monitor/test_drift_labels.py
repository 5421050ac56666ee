"""A drift-started retrain waits for its labels: the episode emits ``drift.labelled`` once
``drift_min_labels`` labels have joined the drifted version's predictions since it began,
and a trigger on it starts the retrain then, whether the labels came 10 s or 10 minutes
after the shift. The monitor's and the automation engine's clocks are the test's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from loopml.faces.context import AppContext
from loopml.monitor.reference_store import save_reference
from loopml.pipelines import automation_service, service
from loopml.pipelines.automation import AutomationEngine
from loopml.store import events
from tests.unit.monitor.logged import log_labels, log_predictions, monitor_at
from tests.unit.monitor.test_episodes import ROWS, _drift_events, _frame, _reference

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
        "since": shift.isoformat(),  # the onset: the first shifted row, not its window's start
        "labels": 200,
        "min_labels": 150,
        "round": 1,
    }
    # More labels, twice as many, while that retrain has not been judged: nothing (it may
    # yet replace version 1).
    log_labels(store_ctx, "churn-api", keys[200:400], [0] * 200, shift + timedelta(minutes=20))
    assert round_at(shift + timedelta(minutes=30)) == []
    # The gate refused it (as gates.judge appends its verdict) and version 1 still serves:
    # the episode re-arms at twice the last count, which it has, and starts the retrain again.
    with store_ctx.store.session() as session:
        payload = {"model": "churn", "version": 2, "summary": "roc_auc = 0.51, required >= 0.9"}
        events.append(
            session, type="gate.failed", subject="churn", project="default", payload=payload,
            actor="trigger:on-drift",
        )  # fmt: skip
    assert round_at(shift + timedelta(minutes=32)) == ["drift.labelled"]
    assert [(e["round"], e["labels"]) for e in _labelled_events(store_ctx)] == [(1, 200), (2, 400)]
    # Not again until another refusal and twice 400.
    assert round_at(shift + timedelta(minutes=33)) == []


def test_labels_of_answers_made_before_the_shift_do_not_count(store_ctx: AppContext) -> None:
    """Real traffic is labelled before it shifts: in the hour of a shift at :30, the labels
    of the answers made from :10 to :29 are labels of the old relation. The episode counts
    the labels of the answers made since its onset (the change point, found in the rows),
    not of its window: no ``drift.labelled`` on the old labels (on the window's count it
    fired at once, with 2,000 of them), one once 150 shifted rows have theirs."""
    rng = np.random.default_rng(7)
    save_reference(store_ctx.store, "default", "churn", 1, _reference(rng))
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    shift = hour + timedelta(minutes=30)
    clock = [hour]
    monitor = monitor_at(store_ctx, clock, drift_min_labels=150)

    def round_at(moment: datetime) -> list[str]:
        clock[0] = moment
        return monitor.tick().events

    before: list[tuple[str, int]] = []
    for minute in range(10, 30):  # 100 unshifted answers a minute, labelled a minute later
        at = hour + timedelta(minutes=minute)
        keys = log_predictions(
            store_ctx, "churn-api", _frame(rng, 100), at, [1] * 100, prefix=f"u{minute}"
        )
        log_labels(store_ctx, "churn-api", keys, [1] * 100, at + timedelta(minutes=1))
        before += keys
    after: list[tuple[str, int]] = []
    for minute in range(30, 50):  # then shifted ones, their labels 20 minutes late
        frame = _frame(rng, 100, shift_b=2.0)
        at = hour + timedelta(minutes=minute)
        after += log_predictions(store_ctx, "churn-api", frame, at, [1] * 100, prefix=f"s{minute}")
    assert round_at(hour + timedelta(minutes=50)) == ["drift.detected"]
    [detected] = [p for t, p in _drift_events(store_ctx) if t == "drift.detected"]
    onset = datetime.fromisoformat(detected["onset"])
    assert onset == shift, (detected["onset"], shift)
    assert detected["window_start"] == hour.isoformat()

    # The 2,000 old labels are in the window, yet nothing is labelled since the onset.
    assert round_at(hour + timedelta(minutes=55)) == []
    log_labels(store_ctx, "churn-api", after[:149], [0] * 149, hour + timedelta(minutes=56))
    assert round_at(hour + timedelta(minutes=57)) == []
    log_labels(store_ctx, "churn-api", after[149:150], [0], hour + timedelta(minutes=58))
    assert round_at(hour + timedelta(minutes=59)) == ["drift.labelled"]
    [labelled] = _labelled_events(store_ctx)
    assert (labelled["since"], labelled["labels"]) == (shift.isoformat(), 150)
