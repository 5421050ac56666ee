"""The step queue on SQLite and PostgreSQL: claims, leases, fencing tokens, retries with
backoff, the sweep of expired leases, dependencies, cancellation (RELIABILITY 18-21)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from loopml.core.clock import utcnow
from loopml.core.pipelines import AttemptStatus, PipelineRun, RunStatus, StepStatus
from loopml.pipelines import service
from loopml.store import MetadataStore, events
from loopml.store import pipeline_queue as queue
from loopml.store.pipeline_queue import Claim

from .conftest import step_of

CHAIN = """\
name: chain
steps:
  - {name: a, python: "m:f", outputs: {x: integer}, retries: {count: 2, backoff: 5}}
  - {name: b, python: "m:f", with: {v: "${{ steps.a.outputs.x }}"}}
  - {name: c, python: "m:f", needs: [b]}
"""
ERROR = {"type": "RuntimeError", "message": "boom", "retryable": True}


def start(store: MetadataStore, spec: str = CHAIN) -> PipelineRun:
    service.apply_spec(store, "default", spec, actor="t")
    name = spec.split("\n", 1)[0].removeprefix("name: ")
    return service.start_run(store, "default", name, {}, actor="t")


def claim(
    store: MetadataStore, worker: str = "w1", lease_s: float = 30, **kw: object
) -> Claim | None:
    with store.session() as session:
        return queue.claim(session, worker, lease_s=lease_s, **kw)  # type: ignore[arg-type]


def get(store: MetadataStore, run_id: str) -> PipelineRun:
    return service.get_run(store, "default", run_id)


def test_only_ready_steps_are_claimed_and_results_move_the_run_on(any_store: MetadataStore) -> None:
    run = start(any_store)
    assert [s.status for s in get(any_store, run.id).steps or []] == [
        "QUEUED",
        "PENDING",
        "PENDING",
    ]
    first = claim(any_store)
    assert first is not None
    assert (first.step, first.attempt, first.token) == ("a", 1, 1)
    assert claim(any_store, "w2") is None  # b waits for a
    with any_store.session() as session:
        queue.mark_run_started(session, run.id)
        assert queue.complete(session, first.step_run_id, first.token, {"x": 7})
    found = get(any_store, run.id)
    assert found.status == RunStatus.RUNNING
    assert [s.status for s in found.steps or []] == ["SUCCEEDED", "QUEUED", "PENDING"]
    second = claim(any_store, "w2")
    assert second is not None
    assert second.step == "b"
    with any_store.session() as session:
        assert queue.context(session, run.id).outputs == {"a": {"x": 7}}
        assert queue.complete(session, second.step_run_id, second.token, {})
    third = claim(any_store)
    assert third is not None
    assert third.step == "c"
    with any_store.session() as session:
        assert queue.complete(session, third.step_run_id, third.token, {})
    done = get(any_store, run.id)
    assert done.status == RunStatus.SUCCEEDED
    assert done.finished_at is not None
    with any_store.session() as session:
        types = [e.type for e in events.list_(session, type="pipeline.*").items]
    assert types == [
        "pipeline.applied",
        "pipeline.run.queued",
        "pipeline.step.succeeded",
        "pipeline.step.succeeded",
        "pipeline.step.succeeded",
        "pipeline.run.succeeded",
    ]


def test_a_stale_token_changes_nothing(any_store: MetadataStore) -> None:
    run = start(any_store)
    old = claim(any_store, "w1", lease_s=1)
    assert old is not None
    later = utcnow() + timedelta(seconds=2)
    with any_store.session() as session:
        assert queue.sweep(session, now=later) == 1
    new = claim(any_store, "w2", lease_s=30, now=later + timedelta(seconds=5))
    assert new is not None
    assert (new.attempt, new.token) == (2, 2)
    with any_store.session() as session:
        assert not queue.heartbeat(session, old.step_run_id, old.token, lease_s=30).ok
        assert not queue.complete(session, old.step_run_id, old.token, {"x": 1})
        assert not queue.fail(session, old.step_run_id, old.token, ERROR, retryable=True)
        assert not queue.start(session, old.step_run_id, old.token, inputs={}, cache_key=None)
        assert not queue.cancelled(session, old.step_run_id, old.token)
        assert not queue.release(session, old.step_run_id, old.token)
        assert queue.heartbeat(session, new.step_run_id, new.token, lease_s=30).ok
        assert queue.complete(session, new.step_run_id, new.token, {"x": 2})
    step = step_of(get(any_store, run.id), "a")
    assert step.status == StepStatus.SUCCEEDED
    assert step.outputs == {"x": 2}
    assert [(a.attempt, a.worker, a.status) for a in step.attempts] == [
        (1, "w1", AttemptStatus.LOST),
        (2, "w2", AttemptStatus.SUCCEEDED),
    ]
    assert step.attempts[0].error is not None
    assert "w1 stopped renewing" in step.attempts[0].error.message


def test_a_worker_that_dies_before_its_first_heartbeat_loses_the_step(
    any_store: MetadataStore,
) -> None:
    run = start(any_store)
    held = claim(any_store, "doomed", lease_s=2)
    assert held is not None
    with any_store.session() as session:
        assert queue.sweep(session) == 0  # the lease still runs
        assert queue.sweep(session, now=utcnow() + timedelta(seconds=3)) == 1
    step = step_of(get(any_store, run.id), "a")
    assert step.status == StepStatus.QUEUED
    assert step.failures == 1


def test_retries_wait_their_backoff_then_fail_and_skip_dependents(any_store: MetadataStore) -> None:
    run = start(any_store)
    now = utcnow()
    for failure in (1, 2):
        held = claim(any_store, now=now)
        assert held is not None
        backoff = timedelta(seconds=5 * 2 ** (failure - 1))  # 5 s, then 10 s
        before = utcnow()
        with any_store.session() as session:
            assert queue.fail(session, held.step_run_id, held.token, ERROR, retryable=True)
        after = utcnow()
        step = step_of(get(any_store, run.id), "a")
        assert step.status == StepStatus.QUEUED
        assert step.next_attempt_at is not None
        # Counted from the failure: between the clock read before and after it.
        assert before + backoff <= step.next_attempt_at <= after + backoff
        assert claim(any_store, now=utcnow()) is None  # not before its backoff
        now = step.next_attempt_at
    held = claim(any_store, now=now)
    assert held is not None
    assert held.attempt == 3
    with any_store.session() as session:
        assert queue.fail(session, held.step_run_id, held.token, ERROR, retryable=True)
    found = get(any_store, run.id)
    assert [s.status for s in found.steps or []] == ["FAILED", "SKIPPED", "SKIPPED"]
    assert found.status == RunStatus.FAILED
    assert found.error == "step 'a' failed: boom"
    assert len(step_of(found, "a").attempts) == 3


def test_a_non_retryable_error_fails_at_once(any_store: MetadataStore) -> None:
    run = start(any_store)
    held = claim(any_store)
    assert held is not None
    with any_store.session() as session:
        queue.fail(
            session, held.step_run_id, held.token, {**ERROR, "retryable": False}, retryable=False
        )
    found = get(any_store, run.id)
    assert step_of(found, "a").status == StepStatus.FAILED
    assert step_of(found, "a").attempt == 1
    assert found.status == RunStatus.FAILED


def test_cancel_stops_waiting_steps_at_once_and_running_ones_at_their_heartbeat(
    any_store: MetadataStore,
) -> None:
    run = start(any_store)
    held = claim(any_store)
    assert held is not None
    cancelling = service.cancel_run(any_store, "default", run.id, actor="t")
    assert cancelling.status == RunStatus.CANCELLING
    assert [s.status for s in cancelling.steps or []] == ["RUNNING", "CANCELLED", "CANCELLED"]
    with any_store.session() as session:
        beat = queue.heartbeat(session, held.step_run_id, held.token, lease_s=30)
        assert beat.ok
        assert beat.cancelling
        assert queue.cancelled(session, held.step_run_id, held.token)
    found = get(any_store, run.id)
    assert found.status == RunStatus.CANCELLED
    assert step_of(found, "a").attempts[0].status == AttemptStatus.CANCELLED
    again = service.cancel_run(any_store, "default", run.id, actor="t")
    assert again.status == RunStatus.CANCELLED


def test_a_cancelled_run_whose_worker_died_ends_at_the_sweep(any_store: MetadataStore) -> None:
    run = start(any_store)
    assert claim(any_store, lease_s=1) is not None
    service.cancel_run(any_store, "default", run.id, actor="t")
    with any_store.session() as session:
        queue.sweep(session, now=utcnow() + timedelta(seconds=2))
    found = get(any_store, run.id)
    assert found.status == RunStatus.CANCELLED
    assert step_of(found, "a").status == StepStatus.CANCELLED


def test_a_released_step_is_queued_again_without_using_a_retry(any_store: MetadataStore) -> None:
    run = start(any_store)
    held = claim(any_store)
    assert held is not None
    with any_store.session() as session:
        assert queue.release(session, held.step_run_id, held.token)
    step = step_of(get(any_store, run.id), "a")
    assert (step.status, step.failures) == (StepStatus.QUEUED, 0)
    assert step.attempts[0].status == AttemptStatus.RELEASED
    again = claim(any_store)
    assert again is not None
    assert again.attempt == 2


def test_committing_the_same_result_twice_is_harmless(any_store: MetadataStore) -> None:
    run = start(any_store)
    held = claim(any_store)
    assert held is not None
    with any_store.session() as session:
        assert queue.complete(session, held.step_run_id, held.token, {"x": 1})
    with any_store.session() as session:  # a retry after the answer to the first was lost
        assert queue.complete(session, held.step_run_id, held.token, {"x": 1})
    assert step_of(get(any_store, run.id), "a").attempts[-1].status == AttemptStatus.SUCCEEDED


def test_inputs_are_checked_and_filled_with_defaults(any_store: MetadataStore) -> None:
    from loopml.core.errors import ValidationError

    spec = """\
name: typed
inputs:
  table: {type: table}
  budget: {type: number, default: 3}
  flag: {type: boolean, default: false}
steps:
  - {name: a, python: "m:f"}
"""
    service.apply_spec(any_store, "default", spec, actor="t")
    run = service.start_run(
        any_store, "default", "typed", {"table": "sales@2", "budget": "4.5"}, actor="t"
    )
    assert run.inputs == {"table": "sales@2", "budget": 4.5, "flag": False}
    with pytest.raises(ValidationError, match=r"input 'table' .* is required"):
        service.start_run(any_store, "default", "typed", {}, actor="t")
    with pytest.raises(ValidationError, match="has no input 'tabel'"):
        service.start_run(any_store, "default", "typed", {"tabel": "x"}, actor="t")
    with pytest.raises(ValidationError, match="input 'table': expected a table"):
        service.start_run(any_store, "default", "typed", {"table": "no such!"}, actor="t")


def test_each_changed_apply_is_a_new_version_and_runs_record_theirs(
    any_store: MetadataStore,
) -> None:
    first = service.apply_spec(any_store, "default", CHAIN, actor="t")
    same = service.apply_spec(any_store, "default", CHAIN + "# only a comment\n", actor="t")
    changed = service.apply_spec(
        any_store, "default", CHAIN.replace("backoff: 5", "backoff: 6"), actor="t"
    )
    assert (first.version.version, first.created) == (1, True)
    assert (same.version.version, same.created) == (1, False)
    assert (changed.version.version, changed.created) == (2, True)
    old = service.start_run(any_store, "default", "chain", {}, version=1, actor="t")
    new = service.start_run(any_store, "default", "chain", {}, actor="t")
    assert (old.version, new.version) == (1, 2)
    page = service.list_runs(any_store, "default", pipeline="chain", limit=1)
    assert [r.id for r in page.items] == [new.id]
    assert page.next_cursor is not None
    rest = service.list_runs(any_store, "default", pipeline="chain", cursor=page.next_cursor)
    assert [r.id for r in rest.items] == [old.id]


def test_concurrent_claimers_never_take_the_same_step(any_store: MetadataStore) -> None:
    steps = "\n".join(f'  - {{name: s{i:02d}, python: "m:f"}}' for i in range(40))
    run = start(any_store, f"name: wide\nsteps:\n{steps}\n")
    taken: list[tuple[str, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def claimer(worker: str) -> None:
        barrier.wait()
        while True:
            held = claim(any_store, worker)
            if held is None:
                return
            with lock:
                taken.append((held.step, worker))

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    names = [step for step, _ in taken]
    assert sorted(names) == [f"s{i:02d}" for i in range(40)]  # each exactly once
    found = get(any_store, run.id)
    assert all(s.attempt == 1 and len(s.attempts) == 1 for s in found.steps or [])
