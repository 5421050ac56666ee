"""Schedules and triggers fired by the automation engine, on SQLite and PostgreSQL: cron
ticks with an injected clock, time zones and DST, event filters, ``min_rows``, the
concurrency policies, and two engines on one database firing once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from loopml.core.automation import FiringOutcome
from loopml.core.pipelines import RunStatus
from loopml.pipelines import automation_service as auto
from loopml.pipelines import service
from loopml.pipelines._cron import next_fire
from loopml.pipelines.automation import AutomationEngine, AutomationThread
from loopml.store import MetadataStore, events
from tests.waiting import eventually

SPEC = """\
name: retrain
inputs:
  table: {type: string, default: churn}
steps:
  - {name: a, python: "m:f"}
"""
T0 = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)


class Clock:
    """A settable clock handed to the engine (time is not loopml's code)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(any_store: MetadataStore) -> MetadataStore:
    service.apply_spec(any_store, "default", SPEC, actor="t")
    return any_store


def runs_by(store: MetadataStore, actor: str) -> list[str]:
    return [r.id for r in service.list_runs(store, "default").items if r.actor == actor]


def finish(store: MetadataStore, run_id: str) -> None:
    assert service.cancel_run(store, "default", run_id, actor="t").status == RunStatus.CANCELLED


def fired(store: MetadataStore, kind: str) -> list[dict[str, object]]:
    with store.session() as session:
        return [e.payload for e in events.list_(session, type=f"{kind}.fired").items]


# ---------------------------------------------------------------------------- schedules


def test_a_schedule_fires_at_its_tick_once(store: MetadataStore) -> None:
    clock = Clock()
    made = auto.create_schedule(
        store,
        "default",
        name="every",
        pipeline="retrain",
        cron="* * * * *",
        actor="t",
        clock=clock,
    )
    assert made.next_fire_at == datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    engine = AutomationEngine(store, clock=clock)
    assert engine.tick().schedules == 0  # not yet
    assert runs_by(store, "schedule:every") == []

    clock.now = datetime(2026, 6, 1, 12, 1, 5, tzinfo=UTC)
    assert engine.tick().schedules == 1
    assert engine.tick().schedules == 0  # the same tick never fires twice
    [run_id] = runs_by(store, "schedule:every")
    after = auto.get_schedule(store, "default", "every")
    assert (after.last_run_id, after.last_fired_at) == (run_id, clock.now)
    assert after.next_fire_at == datetime(2026, 6, 1, 12, 2, tzinfo=UTC)
    [firing] = auto.schedule_history(store, "default", "every")
    assert (firing.outcome, firing.run_id) == (FiringOutcome.STARTED, run_id)
    assert fired(store, "schedule")[0]["run_id"] == run_id
    run = service.get_run(store, "default", run_id)
    assert run.inputs == {"table": "churn"}


def test_ticks_missed_while_down_fire_once(store: MetadataStore) -> None:
    clock = Clock()
    auto.create_schedule(
        store,
        "default",
        name="every",
        pipeline="retrain",
        cron="* * * * *",
        actor="t",
        clock=clock,
        concurrency="queue",
    )
    clock.now = T0 + timedelta(hours=3)
    engine = AutomationEngine(store, clock=clock)
    assert engine.tick().schedules == 1
    assert engine.tick().schedules == 0
    assert len(runs_by(store, "schedule:every")) == 1
    nxt = auto.get_schedule(store, "default", "every").next_fire_at
    assert nxt is not None
    assert nxt > clock.now


def test_a_paused_schedule_does_not_fire_and_resuming_does_not_catch_up(
    store: MetadataStore,
) -> None:
    clock = Clock()
    auto.create_schedule(
        store,
        "default",
        name="every",
        pipeline="retrain",
        cron="* * * * *",
        actor="t",
        clock=clock,
    )
    auto.update_schedule(store, "default", "every", actor="t", enabled=False)
    clock.now = T0 + timedelta(minutes=5)
    engine = AutomationEngine(store, clock=clock)
    assert engine.tick().schedules == 0
    resumed = auto.update_schedule(store, "default", "every", actor="t", enabled=True, clock=clock)
    assert resumed.next_fire_at == datetime(2026, 6, 1, 12, 6, tzinfo=UTC)
    assert engine.tick().schedules == 0


@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        # 03:00 in Paris is 01:00 UTC in summer and 02:00 UTC in winter.
        (
            "Europe/Paris",
            datetime(2026, 3, 28, 12, tzinfo=UTC),
            datetime(2026, 3, 29, 1, tzinfo=UTC),
        ),
        (
            "Europe/Paris",
            datetime(2026, 3, 27, 12, tzinfo=UTC),
            datetime(2026, 3, 28, 2, tzinfo=UTC),
        ),
        (
            "Europe/Paris",
            datetime(2026, 10, 25, 12, tzinfo=UTC),
            datetime(2026, 10, 26, 2, tzinfo=UTC),
        ),
        (
            "America/New_York",
            datetime(2026, 3, 8, 5, tzinfo=UTC),
            datetime(2026, 3, 8, 7, tzinfo=UTC),
        ),
        ("UTC", datetime(2026, 3, 29, 0, tzinfo=UTC), datetime(2026, 3, 29, 3, tzinfo=UTC)),
    ],
)
def test_the_next_tick_is_read_in_the_zone_across_dst(
    zone: str, after: datetime, expected: datetime
) -> None:
    assert next_fire("0 3 * * *", zone, after) == expected


def test_a_time_the_autumn_change_repeats_fires_once() -> None:
    first = next_fire("30 2 * * *", "Europe/Paris", datetime(2026, 10, 24, 12, tzinfo=UTC))
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert next_fire("30 2 * * *", "Europe/Paris", first) == datetime(
        2026, 10, 26, 1, 30, tzinfo=UTC
    )
    # An hourly expression keeps both 02:30s of that night.
    assert next_fire("30 * * * *", "Europe/Paris", first) == datetime(
        2026, 10, 25, 1, 30, tzinfo=UTC
    )


def test_the_created_schedule_stores_the_zone_tick(store: MetadataStore) -> None:
    made = auto.create_schedule(
        store,
        "default",
        name="paris",
        pipeline="retrain",
        cron="0 3 * * *",
        timezone="Europe/Paris",
        actor="t",
        clock=Clock(datetime(2026, 3, 28, 12, tzinfo=UTC)),
    )
    assert made.next_fire_at == datetime(2026, 3, 29, 1, tzinfo=UTC)


# ---------------------------------------------------------------------------- concurrency


def _fire_now(store: MetadataStore, clock: Clock, engine: AutomationEngine) -> None:
    clock.now += timedelta(minutes=1)
    assert engine.tick().schedules == 1


def test_skip_starts_nothing_while_its_run_is_active(store: MetadataStore) -> None:
    clock = Clock()
    auto.create_schedule(
        store,
        "default",
        name="every",
        pipeline="retrain",
        cron="* * * * *",
        actor="t",
        clock=clock,
    )
    engine = AutomationEngine(store, clock=clock)
    _fire_now(store, clock, engine)
    [first] = runs_by(store, "schedule:every")
    _fire_now(store, clock, engine)
    assert runs_by(store, "schedule:every") == [first]
    skipped = auto.schedule_history(store, "default", "every")[0]
    assert skipped.outcome == FiringOutcome.SKIPPED
    assert skipped.reason is not None
    assert first in skipped.reason
    finish(store, first)
    _fire_now(store, clock, engine)
    assert len(runs_by(store, "schedule:every")) == 2


def test_queue_lets_one_run_wait_and_starts_it_when_the_active_one_ends(
    store: MetadataStore,
) -> None:
    clock = Clock()
    auto.create_schedule(
        store,
        "default",
        name="every",
        pipeline="retrain",
        cron="* * * * *",
        actor="t",
        clock=clock,
        concurrency="queue",
    )
    engine = AutomationEngine(store, clock=clock)
    _fire_now(store, clock, engine)
    [first] = runs_by(store, "schedule:every")
    _fire_now(store, clock, engine)  # waits
    _fire_now(store, clock, engine)  # one waits already: skipped
    outcomes = [f.outcome for f in auto.schedule_history(store, "default", "every")]
    assert outcomes == [FiringOutcome.SKIPPED, FiringOutcome.QUEUED, FiringOutcome.STARTED]
    assert auto.get_schedule(store, "default", "every").waiting
    assert engine.tick().waited == 0  # the first run is still active
    finish(store, first)
    assert engine.tick().waited == 1
    assert engine.tick().waited == 0
    runs = runs_by(store, "schedule:every")
    assert len(runs) == 2
    after = auto.get_schedule(store, "default", "every")
    assert not after.waiting
    assert after.last_run_id == runs[0] != first


# ---------------------------------------------------------------------------- triggers


def _append(store: MetadataStore, type: str, subject: str, **payload: object) -> int:
    with store.session() as session:
        return events.append(
            session, type=type, subject=subject, project="default", payload=payload, actor="x"
        ).id


@pytest.mark.parametrize(
    ("on", "where", "miss", "hit"),
    [
        (
            "model.version.registered",
            {"model": "churn"},
            ("other/1", {"model": "other", "version": 1}),
            ("churn/2", {"model": "churn", "version": 2}),
        ),
        (
            "gate.failed",
            {"model": "churn"},
            ("other", {"model": "other", "version": 1}),
            ("churn", {"model": "churn", "version": 3}),
        ),
        (
            "drift.detected",
            {"deployment": "churn-prod"},
            ("churn-dev", {"deployment": "churn-dev", "model": "churn"}),
            ("churn-prod", {"deployment": "churn-prod", "model": "churn"}),
        ),
    ],
)
def test_event_triggers_fire_on_matching_events_only(
    store: MetadataStore,
    on: str,
    where: dict[str, str],
    miss: tuple[str, dict[str, object]],
    hit: tuple[str, dict[str, object]],
) -> None:
    _append(store, on, hit[0], **hit[1])  # history: a new trigger does not fire on it
    auto.create_trigger(
        store, "default", name="t1", pipeline="retrain", on=on, where=where, actor="t"
    )
    engine = AutomationEngine(store)
    assert engine.tick().events == 0
    _append(store, on, miss[0], **miss[1])
    _append(store, "gate.passed" if on == "gate.failed" else "gate.failed", hit[0], **hit[1])
    assert engine.tick().events == 0
    event_id = _append(store, on, hit[0], **hit[1])
    assert engine.tick().events == 1
    assert engine.tick().events == 0
    [run_id] = runs_by(store, "trigger:t1")
    [firing] = auto.trigger_history(store, "default", "t1")
    assert (firing.event_id, firing.run_id, firing.payload) == (event_id, run_id, hit[1])
    assert fired(store, "trigger")[0]["event_id"] == event_id


def test_min_rows_accumulate_across_appends_then_restart(store: MetadataStore) -> None:
    auto.create_trigger(
        store,
        "default",
        name="rows",
        pipeline="retrain",
        on="table.appended",
        where={"table": "churn"},
        min_rows=10,
        concurrency="queue",
        actor="t",
    )
    engine = AutomationEngine(store)
    _append(store, "table.appended", "churn", rows=4, version=1, mode="append")
    _append(store, "table.appended", "other", rows=40, version=1, mode="append")
    assert engine.tick().events == 0
    assert auto.get_trigger(store, "default", "rows").rows_pending == 4
    _append(store, "table.appended", "churn", rows=7, version=2, mode="append")
    assert engine.tick().events == 1
    assert auto.get_trigger(store, "default", "rows").rows_pending == 0
    _append(store, "table.appended", "churn", rows=9, version=3, mode="append")
    assert engine.tick().events == 0
    assert len(runs_by(store, "trigger:rows")) == 1


def test_a_paused_trigger_ignores_events_and_resumes_from_now(store: MetadataStore) -> None:
    auto.create_trigger(
        store, "default", name="t1", pipeline="retrain", on="gate.failed", actor="t"
    )
    auto.update_trigger(store, "default", "t1", actor="t", enabled=False)
    _append(store, "gate.failed", "churn", model="churn")
    engine = AutomationEngine(store)
    assert engine.tick().events == 0
    auto.update_trigger(store, "default", "t1", actor="t", enabled=True)
    assert engine.tick().events == 0
    _append(store, "gate.failed", "churn", model="churn")
    assert engine.tick().events == 1


def test_a_run_that_cannot_start_is_recorded_and_spends_the_event(
    store: MetadataStore,
) -> None:
    auto.create_trigger(
        store,
        "default",
        name="t1",
        pipeline="retrain",
        on="gate.failed",
        inputs={"table": "x"},
        actor="t",
    )
    # The pipeline's next version drops the input the trigger passes.
    service.apply_spec(
        store,
        "default",
        SPEC.replace("inputs:\n  table: {type: string, default: churn}\n", ""),
        actor="t",
    )
    _append(store, "gate.failed", "churn", model="churn")
    engine = AutomationEngine(store)
    assert engine.tick().events == 1
    assert engine.tick().events == 0
    [firing] = auto.trigger_history(store, "default", "t1")
    assert firing.outcome == FiringOutcome.SKIPPED
    assert firing.reason is not None
    assert "table" in firing.reason
    assert runs_by(store, "trigger:t1") == []


# ---------------------------------------------------------------------------- engines


def test_an_engine_thread_survives_a_failing_round(store: MetadataStore) -> None:
    calls = {"n": 0}

    def flaky() -> datetime:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("clock broke")
        return T0 + timedelta(minutes=1)

    auto.create_schedule(
        store,
        "default",
        name="every",
        pipeline="retrain",
        cron="* * * * *",
        actor="t",
        clock=Clock(),
    )
    thread = AutomationThread(AutomationEngine(store, interval_s=0.02, clock=flaky)).start()
    try:
        eventually(lambda: runs_by(store, "schedule:every"), 30, "the schedule's run")
    finally:
        thread.stop()
    assert calls["n"] > 2, f"the clock was read {calls['n']} times, its failures not retried"
    runs = runs_by(store, "schedule:every")
    assert len(runs) == 1, f"the schedule fired {len(runs)} times: {runs}"


def _race(engines: list[AutomationEngine], what: Callable[[AutomationEngine], int]) -> int:
    barrier = threading.Barrier(len(engines))
    counts: list[int] = []

    def go(engine: AutomationEngine) -> None:
        barrier.wait()
        counts.append(what(engine))

    threads = [threading.Thread(target=go, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return sum(counts)


def _fired(engine: AutomationEngine) -> int:
    report = engine.tick()
    return report.schedules + report.events + report.waited


@pytest.mark.postgres
def test_engines_sharing_postgresql_fire_a_tick_and_an_event_once(postgres_url: str) -> None:
    stores = [MetadataStore(postgres_url) for _ in range(4)]
    try:
        stores[0].upgrade()
        service.apply_spec(stores[0], "default", SPEC, actor="t")
        clock = Clock()
        auto.create_schedule(
            stores[0],
            "default",
            name="every",
            pipeline="retrain",
            cron="* * * * *",
            actor="t",
            clock=clock,
        )
        auto.create_trigger(
            stores[0],
            "default",
            name="t1",
            pipeline="retrain",
            on="gate.failed",
            concurrency="queue",
            actor="t",
        )
        engines = [AutomationEngine(s, clock=clock) for s in stores]
        for _ in range(5):
            clock.now += timedelta(minutes=1)
            _append(stores[0], "gate.failed", "churn", model="churn")
            assert _race(engines, _fired) == 2
        schedule_firings = auto.schedule_history(stores[0], "default", "every")
        trigger_firings = auto.trigger_history(stores[0], "default", "t1")
        assert len(schedule_firings) == len(trigger_firings) == 5
        assert len(runs_by(stores[0], "schedule:every")) == 1
        assert len(runs_by(stores[0], "trigger:t1")) == 1
        assert len({f.event_id for f in trigger_firings}) == 5
    finally:
        for s in stores:
            s.dispose()
