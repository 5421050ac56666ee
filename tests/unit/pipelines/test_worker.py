"""A real worker running python steps in child processes: parallelism, retries with
backoff, non-retryable errors, timeouts, the cache, cancellation, logs and shutdown."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from loopml.core.pipelines import AttemptStatus, RunStatus, StepStatus
from loopml.pipelines import service
from loopml.pipelines.base import capped_log
from loopml.pipelines.worker import WorkerConfig
from loopml.settings import Settings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from tests.waiting import eventually

from .conftest import FAST, running_worker, step_of, wait_run

STEPS = """
import json, logging, os, time
from pathlib import Path
from loopml.core.errors import ValidationError
from loopml.pipelines import step

@step
def nap(ctx, seconds, marker=None):
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return {"slept": seconds}

@step
def flaky(ctx, ledger, fail_times):
    # The side effect is keyed on the idempotency key: it happens once across retries.
    seen = Path(ledger).read_text().split() if Path(ledger).exists() else []
    if ctx.idempotency_key not in seen:
        with open(ledger, "a") as out:
            out.write(ctx.idempotency_key + "\\n")
    print(f"attempt {ctx.attempt}", flush=True)
    if ctx.attempt <= fail_times:
        raise RuntimeError(f"flaky failure {ctx.attempt}")
    return {"attempt": ctx.attempt}

@step
def refuse(ctx):
    raise ValidationError("the input is wrong; retrying will not help")

@step
def double(ctx, value, counter):
    with open(counter, "a") as out:
        out.write("x")
    logging.getLogger("mystep").info("doubling %s", value)
    return {"value": value * 2}

@step
def wrong_type(ctx):
    return {"value": "not a number"}

@step
def loud(ctx, lines, pause):
    # Fixed-width lines, half before a pause of a few heartbeats (the log is uploaded while
    # the step runs), half after.
    for i in range(lines):
        print(f"line {i:06d} " + "x" * 28, flush=True)
        if i == lines // 2:
            time.sleep(pause)
    return {"lines": lines}

def unmarked(ctx):
    return {}
"""


@pytest.fixture
def steps(usercode: Callable[[str, str], Path]) -> Path:
    return usercode("pipe_steps", STEPS)


def run_spec(store: MetadataStore, spec: str, inputs: dict[str, object] | None = None) -> str:
    applied = service.apply_spec(store, "default", spec, actor="t")
    return service.start_run(store, "default", applied.pipeline.name, inputs or {}, actor="t").id


def test_independent_steps_run_in_parallel(
    steps: Path, store: MetadataStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    spec = """\
name: parallel
steps:
  - {name: join, python: "pipe_steps:nap", with: {seconds: 0}, needs: [left, right]}
  - {name: left, python: "pipe_steps:nap", with: {seconds: 1.5}, outputs: {slept: number}}
  - {name: right, python: "pipe_steps:nap", with: {seconds: 1.5}, outputs: {slept: number}}
"""
    run_id = run_spec(store, spec)
    with running_worker(store, artifacts, settings):
        run = wait_run(store, run_id)
    assert run.status == RunStatus.SUCCEEDED
    left, right, join = (step_of(run, n) for n in ("left", "right", "join"))
    assert left.started_at is not None
    assert right.started_at is not None
    assert left.finished_at is not None
    assert right.finished_at is not None
    # Both ran at the same time: each started before the other finished.
    assert left.started_at < right.finished_at
    assert right.started_at < left.finished_at
    assert join.started_at is not None
    assert join.started_at >= max(left.finished_at, right.finished_at)


def test_retries_with_backoff_are_counted_exactly(
    steps: Path,
    tmp_path: Path,
    store: MetadataStore,
    artifacts: ArtifactStore,
    settings: Settings,
) -> None:
    spec = """\
name: retrying
inputs: {ledger: string}
steps:
  - name: flaky
    python: pipe_steps:flaky
    with: {ledger: "${{ inputs.ledger }}", fail_times: 2}
    outputs: {attempt: integer}
    retries: {count: 3, backoff: 0.5, factor: 2}
"""
    ledger = tmp_path / "ledger.txt"
    run_id = run_spec(store, spec, {"ledger": str(ledger)})
    with running_worker(store, artifacts, settings):
        run = wait_run(store, run_id)
    flaky = step_of(run, "flaky")
    assert run.status == RunStatus.SUCCEEDED
    assert flaky.outputs == {"attempt": 3}
    assert [a.status for a in flaky.attempts] == [
        AttemptStatus.FAILED,
        AttemptStatus.FAILED,
        AttemptStatus.SUCCEEDED,
    ]
    assert (flaky.attempt, flaky.failures) == (3, 2)
    # The failure and the claim stamp the same clock: a retry is never claimed before its
    # backoff has passed (the second wait, 1.0 s, proves the factor). How late the claim
    # comes depends on the machine: the worker polls every 20 ms, but on a loaded CI machine
    # its thread or the SQLite lock can lag by seconds (2.24 s for the 0.5 s once), so the
    # upper bound only catches a worker that ignores a due retry.
    for earlier, later, scheduled in zip(
        flaky.attempts, flaky.attempts[1:], (0.5, 1.0), strict=False
    ):
        assert earlier.finished_at is not None
        waited = (later.started_at - earlier.finished_at).total_seconds()
        assert scheduled <= waited <= scheduled + 5.0, (scheduled, waited)
    assert ledger.read_text().split() == [flaky.id]  # the side effect ran once
    _, log = service.read_log(store, artifacts, "default", run_id, "flaky", attempt=2)
    assert b"attempt 2" in log
    assert b"flaky failure 2" in log


def test_a_non_retryable_error_is_not_retried(
    steps: Path, store: MetadataStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    spec = """\
name: refusing
steps:
  - {name: refuse, python: "pipe_steps:refuse", retries: {count: 3, backoff: 0.1}}
  - {name: unmarked, python: "pipe_steps:unmarked", retries: {count: 3, backoff: 0.1}}
  - {name: typed, python: "pipe_steps:wrong_type", outputs: {value: number}, retries: 3}
  - {name: later, python: "pipe_steps:nap", with: {seconds: 0}, needs: [refuse]}
"""
    run_id = run_spec(store, spec)
    with running_worker(store, artifacts, settings):
        run = wait_run(store, run_id)
    assert run.status == RunStatus.FAILED
    for name, expected in (
        ("refuse", "retrying will not help"),
        ("unmarked", "not a pipeline step: mark it with @loopml.pipelines.step"),
        ("typed", "output 'value': expected a finite number"),
    ):
        step = step_of(run, name)
        assert (step.status, step.attempt) == (StepStatus.FAILED, 1), name
        assert step.error is not None
        assert expected in step.error.message
        assert not step.error.retryable
        assert step.error.origin == "user_code"
    assert step_of(run, "later").status == StepStatus.SKIPPED


def test_a_step_past_its_timeout_is_stopped(
    steps: Path, tmp_path: Path, store: MetadataStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    spec = """\
name: slow
steps:
  - {name: nap, python: "pipe_steps:nap", with: {seconds: 60}, timeout: 1s}
"""
    run_id = run_spec(store, spec)
    with running_worker(store, artifacts, settings):
        run = wait_run(store, run_id, timeout_s=120)
    # Stopped by its timeout, not left to nap its 60 s: failed, and saying why.
    nap = step_of(run, "nap")
    assert nap.status == StepStatus.FAILED, f"the nap ended {nap.status}: {nap.error}"
    assert nap.error is not None
    assert "ran past its timeout of 1 s" in nap.error.message, nap.error.message


def test_an_unchanged_step_reuses_its_cached_outputs(
    steps: Path,
    tmp_path: Path,
    store: MetadataStore,
    artifacts: ArtifactStore,
    settings: Settings,
) -> None:
    spec = """\
name: cached
inputs: {value: {type: integer, default: 21}, counter: string}
outputs: {value: "${{ steps.double.outputs.value }}"}
steps:
  - name: double
    python: pipe_steps:double
    with: {value: "${{ inputs.value }}", counter: "${{ inputs.counter }}"}
    outputs: {value: integer}
    cache: true
"""
    counter = tmp_path / "calls"
    inputs = {"counter": str(counter)}
    with running_worker(store, artifacts, settings):
        first = wait_run(store, run_spec(store, spec, inputs))
        second = wait_run(store, run_spec(store, spec, inputs))
        other = wait_run(store, run_spec(store, spec, {**inputs, "value": 5}))
        (steps).write_text(steps.read_text() + "\n# edited\n")
        edited = wait_run(store, run_spec(store, spec, inputs))
    hit = step_of(second, "double")
    assert step_of(first, "double").status == StepStatus.SUCCEEDED
    assert (hit.status, hit.cached_from) == (StepStatus.CACHED, step_of(first, "double").id)
    assert second.outputs == first.outputs == {"value": 42}
    assert step_of(other, "double").status == StepStatus.SUCCEEDED  # another input: a miss
    assert other.outputs == {"value": 10}
    assert step_of(edited, "double").status == StepStatus.SUCCEEDED  # changed code: a miss
    assert counter.read_text() == "xxx"  # the hit ran nothing
    assert hit.cache_key == step_of(first, "double").cache_key


def test_cancelling_stops_a_running_step(
    steps: Path, tmp_path: Path, store: MetadataStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    import os

    marker = tmp_path / "pid"
    spec = f"""\
name: cancelled
steps:
  - {{name: nap, python: "pipe_steps:nap", with: {{seconds: 60, marker: "{marker}"}}}}
  - {{name: after, python: "pipe_steps:nap", with: {{seconds: 0}}, needs: [nap]}}
"""
    run_id = run_spec(store, spec)
    with running_worker(store, artifacts, settings):
        eventually(marker.exists, 60, "the nap step to start (its marker)")
        asked = time.monotonic()
        assert (
            service.cancel_run(store, "default", run_id, actor="t").status == RunStatus.CANCELLING
        )
        run = wait_run(store, run_id, timeout_s=50)
        took = time.monotonic() - asked
    assert run.status == RunStatus.CANCELLED, run.status
    # margin: the cancel took 0.35 s at load 8; 30 s is 85x that, and half the step's
    # 60 s nap, so a cancel that waited for the nap fails.
    assert took < 30, f"the cancel took {took:.1f} s: it waited for the step"
    assert [s.status for s in run.steps or []] == [StepStatus.CANCELLED, StepStatus.CANCELLED]
    with pytest.raises(ProcessLookupError):
        os.kill(int(marker.read_text()), 0)  # the step's process is gone


def test_a_stopping_worker_gives_its_steps_back(
    steps: Path, tmp_path: Path, store: MetadataStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    marker = tmp_path / "pid"
    spec = f"""\
name: handback
steps:
  - {{name: nap, python: "pipe_steps:nap", with: {{seconds: 60, marker: "{marker}"}}}}
"""
    run_id = run_spec(store, spec)
    with running_worker(store, artifacts, settings):
        eventually(marker.exists, 60, "the nap step to start (its marker)")
    nap = step_of(service.get_run(store, "default", run_id), "nap")
    assert (nap.status, nap.failures) == (StepStatus.QUEUED, 0)
    assert [a.status for a in nap.attempts] == [AttemptStatus.RELEASED]


def test_step_logs_are_captured(
    steps: Path, tmp_path: Path, store: MetadataStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    spec = """\
name: logged
steps:
  - name: double
    python: pipe_steps:double
    with: {value: 4, counter: COUNTER}
    outputs: {value: integer}
""".replace("COUNTER", str(tmp_path / "c"))
    run_id = run_spec(store, spec)
    config = WorkerConfig(**{**FAST.model_dump(), "concurrency": 1})
    with running_worker(store, artifacts, settings, config):
        run = wait_run(store, run_id)
    assert run.status == RunStatus.SUCCEEDED
    attempt, text = service.read_log(store, artifacts, "default", run_id, "double")
    assert attempt.attempt == 1
    assert b"mystep: doubling 4" in text
    assert b'step double done: {"value": 8}' in text


def test_a_database_outage_at_commit_time_is_ridden_out(
    steps: Path, tmp_path: Path, settings: Settings, store: MetadataStore, artifacts: ArtifactStore
) -> None:
    """RELIABILITY 22: the result is committed once the database is back, exactly once."""
    import sqlite3
    import threading

    from loopml.store import events

    marker = tmp_path / "pid"
    spec = f"""\
name: outage
steps:
  - {{name: nap, python: "pipe_steps:nap", with: {{seconds: 1, marker: "{marker}"}}}}
"""
    run_id = run_spec(store, spec)
    impatient = MetadataStore(settings.database_url, busy_timeout_ms=50)
    locked = threading.Event()

    def hold_the_write_lock() -> None:
        conn = sqlite3.connect(str(settings.home / "loopml.db"), isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(2.5)  # the step ends (at about 1 s) while nobody else can write
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    outage = threading.Thread(target=hold_the_write_lock)
    try:
        with running_worker(impatient, artifacts, settings):
            eventually(marker.exists, 60, "the nap step to start (its marker)", interval_s=0.01)
            outage.start()
            assert locked.wait(5)
            run = wait_run(store, run_id)
    finally:
        outage.join()
        impatient.dispose()
    nap = step_of(run, "nap")
    assert run.status == RunStatus.SUCCEEDED
    assert [a.status for a in nap.attempts] == [AttemptStatus.SUCCEEDED]
    finished = nap.attempts[0].finished_at
    assert finished is not None
    assert (finished - nap.attempts[0].started_at).total_seconds() > 2.2  # after the outage
    with store.session() as session:
        kinds = [e.type for e in events.list_(session, type="pipeline.step.*").items]
    assert kinds == ["pipeline.step.succeeded"]


def test_a_step_log_past_its_cap_keeps_its_start_and_newest_end(
    steps: Path, store: MetadataStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    spec = """\
name: loud
steps:
  - {name: loud, python: "pipe_steps:loud", with: {lines: 4000, pause: 1.0}}
"""
    run_id = run_spec(store, spec)
    cap = 16 * 1024
    config = WorkerConfig(**{**FAST.model_dump(), "concurrency": 1, "step_log_max_bytes": cap})
    with running_worker(store, artifacts, settings, config):
        run = wait_run(store, run_id)
    assert run.status == RunStatus.SUCCEEDED
    _, text = service.read_log(store, artifacts, "default", run_id, "loud")
    # 4,000 lines of 41 bytes printed (164 KB): what is kept is under the cap.
    assert len(text) <= cap
    kept = [int(line[5:11]) for line in text.splitlines() if line.startswith(b"line ")]
    # The start, and the newest end (printed after the pause).
    assert (kept[0], kept[-1]) == (0, 3999)
    assert b'step loud done: {"lines": 4000}' in text
    [marker] = [line for line in text.splitlines() if line.startswith(b"[loopml] ...")]
    dropped = int(marker.split()[2].replace(b",", b""))
    gap = [b for a, b in itertools.pairwise(kept) if b != a + 1]
    assert len(gap) == 1  # one stretch left out, the lines on either side whole
    first_after = gap[0]
    last_before = kept[kept.index(first_after) - 1]
    assert dropped == (first_after - last_before - 1) * 41
    assert b"16,384 bytes (worker.step_log_max_bytes)" in marker


def test_capped_log_reads_a_file_whole_under_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "step.log"
    assert capped_log(path, 100) == b""
    path.write_bytes(b"a\nb\n" * 25)
    assert capped_log(path, 100) == capped_log(path, None) == b"a\nb\n" * 25
    path.write_bytes(b"x" * 10_000)  # one long line: cut where the budget ends
    capped = capped_log(path, 4096)
    assert len(capped) <= 4096
    assert b"bytes of this step's output left out" in capped
