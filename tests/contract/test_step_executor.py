"""The one contract every ``StepExecutor`` passes: the local executor (a child process per
attempt) and the Ray executor (a Ray task per attempt on a real local cluster). Whatever the
executor: a step's outputs come back, a raising step is a failed outcome that says whose
failure it was, a process that dies is a failed, retryable outcome, ``stop`` ends a running
step, and the step's output is in its log."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopml.core.executors import RayExecutorConfig
from loopml.pipelines.backends.local import LocalExecutor, LocalExecutorConfig
from loopml.pipelines.base import StepExecutor, StepHandle, StepOutcome, StepTask
from loopml.settings import Settings
from tests.waiting import eventually

STEPS = """
import os
import time

from loopml.pipelines import step


@step
def add(ctx, a, b):
    print("adding", a, "and", b, flush=True)
    return {"sum": a + b}


@step
def broken(ctx):
    raise ValueError("the data has no rows")


@step
def dies(ctx):
    os._exit(9)


@step
def sleeps(ctx, seconds):
    print("sleeping", flush=True)
    time.sleep(seconds)
    return {}
"""


@pytest.fixture(
    params=[
        "local",
        pytest.param("ray", marks=pytest.mark.ray),
    ]
)
def executor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StepExecutor]:
    made: StepExecutor
    if request.param == "ray":
        from loopml.pipelines.backends.ray import RayExecutor

        cluster = request.getfixturevalue("ray_cluster")
        config = RayExecutorConfig(type="ray", address=cluster.address, stop_grace_s=1.0)
        made = RayExecutor(config, Settings(home=tmp_path / "home"))
    else:
        made = LocalExecutor(LocalExecutorConfig(stop_grace_s=1.0))
    yield made
    made.close()


def task_maker(tmp_path: Path, module: str, source: str) -> Any:
    """``make(function, params, outputs)``: a task for a function of ``module`` (written from
    ``source`` into a folder of its own, on the task's ``sys.path``), in a fresh home."""
    folder = tmp_path / "usercode"
    folder.mkdir()
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    settings = Settings(home=tmp_path / "home").model_dump(mode="json")

    def make(function: str, params: dict[str, Any], outputs: dict[str, str]) -> StepTask:
        return StepTask(
            project="default",
            project_id="p" * 32,
            pipeline=module,
            run_id="r" * 32,
            step=function,
            step_run_id="s" * 32,
            attempt=1,
            uses="python",
            python=f"{module}:{function}",
            params=params,
            outputs=outputs,
            settings=settings,
            sys_path=[str(folder)],
        )

    return make


@pytest.fixture
def task_for(tmp_path: Path) -> Any:
    return task_maker(tmp_path, "contract_steps", STEPS)


def finish(handle: StepHandle, timeout_s: float = 60.0) -> StepOutcome:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        outcome = handle.wait(0.2)
        if outcome is not None:
            return outcome
    pytest.fail("the step did not finish")


def test_outputs_come_back_and_the_output_is_logged(executor: StepExecutor, task_for: Any) -> None:
    handle = executor.start(task_for("add", {"a": 2, "b": 3}, {"sum": "integer"}))
    try:
        outcome = finish(handle)
        assert (outcome.ok, outcome.outputs, outcome.error) == (True, {"sum": 5}, None)
        assert b"adding 2 and 3" in handle.read_log()
    finally:
        handle.close()


def test_a_raising_step_is_a_failed_outcome_that_names_the_users_code(
    executor: StepExecutor, task_for: Any
) -> None:
    handle = executor.start(task_for("broken", {}, {}))
    try:
        outcome = finish(handle)
        assert not outcome.ok
        assert outcome.error is not None
        assert outcome.error.type == "ValueError"
        assert "the data has no rows" in outcome.error.message
        assert outcome.error.origin == "user_code"
        assert b"the data has no rows" in handle.read_log()
    finally:
        handle.close()


def test_a_process_that_dies_is_a_failed_retryable_outcome(
    executor: StepExecutor, task_for: Any
) -> None:
    handle = executor.start(task_for("dies", {}, {}))
    try:
        outcome = finish(handle)
        assert not outcome.ok
        assert outcome.error is not None
        assert outcome.error.retryable
    finally:
        handle.close()


def test_stop_ends_a_running_step(executor: StepExecutor, task_for: Any) -> None:
    handle = executor.start(task_for("sleeps", {"seconds": 300}, {}))
    try:
        eventually(lambda: b"sleeping" in handle.read_log(), 60, "the step to start sleeping")
        started = time.monotonic()
        handle.stop()
        stop_took = time.monotonic() - started
        # margin: stop took 0.03 s (local) and 0.5 s (Ray) at load 8; 150 s is 300x that,
        # and half the step's 300 s sleep, so a stop that waited the step out fails.
        assert stop_took < 150, f"stop took {stop_took:.1f} s: it waited for the step's sleep"
        outcome = handle.wait(5)
        assert outcome is not None, "stop returned but the attempt has no outcome"
        assert not outcome.ok
    finally:
        handle.close()
