"""The pipeline policy rules, called with plain values (no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loopml.core.pipeline_policy import (
    StepState,
    after_failure,
    after_release,
    final_status,
    first_status,
    lease_lost_error,
    retry_delay_s,
    run_finished,
    run_outputs,
    source_value,
    stored_retry_delay_s,
    unblock,
)
from loopml.core.pipelines import RunStatus, StepStatus
from loopml.pipelines.spec import RetrySpec

P, Q, R = StepStatus.PENDING, StepStatus.QUEUED, StepStatus.RUNNING
OK, FAIL, SKIP = StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED


def step(name: str, status: StepStatus, *needs: str, **extra: object) -> StepState:
    return StepState(name=name, status=status, needs=needs, **extra)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- retries


def test_retry_delay_grows_by_factor_up_to_the_ceiling() -> None:
    delays = [retry_delay_s(n, backoff=10, factor=2, max_backoff=60) for n in range(1, 6)]
    assert delays == [10.0, 20.0, 40.0, 60.0, 60.0]
    assert retry_delay_s(0) == 10.0  # before any failure: the first backoff, not less


def test_the_spec_and_the_stored_settings_use_one_rule() -> None:
    spec = RetrySpec(count=5, backoff=1.5, factor=3, max_backoff=100)
    stored = spec.model_dump()
    for failures in range(1, 8):
        assert spec.delay_s(failures) == stored_retry_delay_s(stored, failures)
    assert stored_retry_delay_s({}, 2) == RetrySpec().delay_s(2) == 20.0


def test_a_retryable_failure_is_queued_after_its_backoff_while_retries_remain() -> None:
    retry = {"backoff": 5, "factor": 2, "max_backoff": 600}
    verdict = after_failure(
        run_status=RunStatus.RUNNING, retryable=True, failures=2, max_retries=2, retry=retry
    )
    assert (verdict.status, verdict.delay_s, verdict.event) == (Q, 10.0, "retrying")


@pytest.mark.parametrize(
    ("retryable", "failures", "max_retries"), [(True, 3, 2), (False, 1, 5), (True, 1, 0)]
)
def test_a_failure_past_its_retries_or_not_retryable_fails(
    retryable: bool, failures: int, max_retries: int
) -> None:
    verdict = after_failure(
        run_status=RunStatus.RUNNING,
        retryable=retryable,
        failures=failures,
        max_retries=max_retries,
        retry={},
    )
    assert (verdict.status, verdict.delay_s, verdict.event) == (FAIL, None, "failed")


def test_a_cancelling_run_retries_nothing_and_releases_nothing() -> None:
    verdict = after_failure(
        run_status=RunStatus.CANCELLING, retryable=True, failures=1, max_retries=3, retry={}
    )
    assert (verdict.status, verdict.delay_s, verdict.event) == (StepStatus.CANCELLED, None, None)
    assert after_release(RunStatus.CANCELLING) == StepStatus.CANCELLED
    assert after_release(RunStatus.RUNNING) == Q


def test_first_status_waits_for_needs_and_conditions() -> None:
    assert first_status([], conditional=False) == Q
    assert first_status(["a"], conditional=False) == P
    assert first_status([], conditional=True) == P


def test_a_lost_lease_is_a_retryable_platform_error() -> None:
    error = lease_lost_error("w1", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert error["retryable"] is True
    assert error["origin"] == "platform"
    assert "w1" in error["message"]
    assert "2026-01-02T03:04:05" in error["message"]
    assert "worker ?" in lease_lost_error(None, None)["message"]


# ---------------------------------------------------------------------------- the DAG


def test_unblock_queues_steps_whose_needs_are_done_and_leaves_the_rest() -> None:
    steps = [
        step("a", OK, outputs={"x": 1}),
        step("b", StepStatus.CACHED),
        step("c", P, "a", "b"),
        step("d", P, "c"),
        step("e", R),
    ]
    changes = unblock(steps, conditions={}, inputs={})
    assert {n: c.status for n, c in changes.items()} == {"c": Q}


def test_unblock_skips_everything_behind_a_failure_transitively() -> None:
    steps = [
        step("d", P, "c"),  # listed before what it needs: the loop runs to a fixed point
        step("c", P, "b"),
        step("b", P, "a"),
        step("a", FAIL),
        step("x", P, "unknown"),  # needs outside the run are ignored
    ]
    changes = unblock(steps, conditions={}, inputs={})
    assert {n: c.status for n, c in changes.items()} == {"b": SKIP, "c": SKIP, "d": SKIP, "x": Q}
    assert all(c.skipped_by is None for c in changes.values())


@pytest.mark.parametrize(("value", "expected"), [(True, Q), (False, SKIP), ("true", SKIP)])
def test_a_condition_must_be_exactly_true(value: object, expected: StepStatus) -> None:
    steps = [step("gate", OK, outputs={"passed": value}), step("deploy", P, "gate")]
    condition = {"step": "gate", "output": "passed", "text": "${{ steps.gate.outputs.passed }}"}
    changes = unblock(steps, conditions={"deploy": condition}, inputs={})
    assert changes["deploy"].status == expected
    if expected == SKIP:
        assert changes["deploy"].skipped_by == {"if": condition["text"], "value": value}


def test_a_condition_on_an_input_and_a_root_step() -> None:
    steps = [step("only", P), step("after", P, "only")]
    conditions = {"only": {"input": "go", "text": "${{ inputs.go }}"}}
    changes = unblock(steps, conditions=conditions, inputs={"go": False})
    assert {n: c.status for n, c in changes.items()} == {"only": SKIP, "after": SKIP}
    assert unblock(steps, conditions=conditions, inputs={"go": True})["only"].status == Q


def test_source_value_reads_inputs_and_step_outputs() -> None:
    outputs = {"a": {"m": 3}, "b": None}
    assert source_value({"input": "n"}, {"n": 7}, outputs) == 7
    assert source_value({"step": "a", "output": "m"}, {}, outputs) == 3
    assert source_value({"step": "b", "output": "m"}, {}, outputs) is None
    assert source_value({"step": "zz", "output": "m"}, {}, outputs) is None


def test_run_finished_and_its_final_status() -> None:
    running = [step("a", OK), step("b", R)]
    assert not run_finished(running)
    done = [step("a", OK), step("b", SKIP)]
    assert run_finished(done)
    assert final_status(RunStatus.RUNNING, done) == (RunStatus.SUCCEEDED, None)
    assert final_status(RunStatus.CANCELLING, done) == (RunStatus.CANCELLED, "cancelled")
    cancelled = [step("a", OK), step("b", StepStatus.CANCELLED)]
    assert final_status(RunStatus.RUNNING, cancelled) == (RunStatus.CANCELLED, "cancelled")


def test_a_failed_run_names_its_first_failed_step_in_spec_order() -> None:
    steps = [
        step("late", FAIL, position=5, error={"message": "boom"}),
        step("early", FAIL, position=1, error={"message": "bad input"}),
        step("other", FAIL, position=3, error=None),
    ]
    status, error = final_status(RunStatus.RUNNING, steps)
    assert status == RunStatus.FAILED
    assert error == "step 'early' failed (and 2 more): bad input"
    alone = final_status(RunStatus.RUNNING, [step("x", FAIL)])
    assert alone == (RunStatus.FAILED, "step 'x' failed: failed")
    long = final_status(RunStatus.RUNNING, [step("x", FAIL, error={"message": "y" * 9000})])
    assert len(long[1] or "") == 4000


def test_run_outputs_name_inputs_and_step_outputs() -> None:
    steps = [step("train", OK, outputs={"model": "churn/3"})]
    wanted = {
        "model": {"step": "train", "output": "model"},
        "budget": {"input": "budget_s"},
        "missing": {"step": "nope", "output": "x"},
    }
    found = run_outputs(wanted, {"budget_s": 30}, steps)
    assert found == {"model": "churn/3", "budget": 30, "missing": None}
