"""The concurrency policy of schedules and triggers, called with plain values."""

from __future__ import annotations

from loopml.core.automation import AutomationKind, Concurrency, FiringOutcome, when_busy

RUN = "0" * 32


def test_skip_skips_and_changes_nothing() -> None:
    verdict = when_busy(AutomationKind.SCHEDULE, Concurrency.SKIP, waiting=False, last_run_id=RUN)
    assert verdict.outcome == FiringOutcome.SKIPPED
    assert verdict.reason == (
        f"run {RUN} (started by this schedule) is still active and the concurrency policy is skip"
    )
    assert verdict.state == {}


def test_queue_lets_one_run_wait_and_a_trigger_remembers_its_event() -> None:
    schedule = when_busy(
        AutomationKind.SCHEDULE, Concurrency.QUEUE, waiting=False, last_run_id=RUN, event_id=7
    )
    assert schedule.outcome == FiringOutcome.QUEUED
    assert schedule.state == {"waiting": True}
    assert schedule.reason.endswith(": this run waits for it")
    trigger = when_busy(
        AutomationKind.TRIGGER, Concurrency.QUEUE, waiting=False, last_run_id=RUN, event_id=7
    )
    assert trigger.state == {"waiting": True, "waiting_event_id": 7}
    assert "started by this trigger" in trigger.reason


def test_queue_with_a_run_already_waiting_skips() -> None:
    verdict = when_busy(AutomationKind.TRIGGER, Concurrency.QUEUE, waiting=True, last_run_id=RUN)
    assert verdict.outcome == FiringOutcome.SKIPPED
    assert verdict.reason.endswith("and one run already waits for it")
    assert verdict.state == {}
