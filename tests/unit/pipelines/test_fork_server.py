"""The local executor's fork server (``pipelines._forkserver``): a step's process is forked
from it, in a session of its own, with the worker's environment and folder as they are when
the step starts; stopping a step takes its children too; a server that dies fails its running
steps as a dead process would, and the next step gets a new server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from loopml.pipelines.backends import _forked
from loopml.pipelines.backends.local import LocalExecutor, LocalExecutorConfig, LocalHandle
from tests.contract.test_step_executor import finish, task_maker
from tests.waiting import eventually

STEPS = """
import json
import os
import subprocess
import time

from loopml.pipelines import step


def _probe():
    try:
        import fork_pythonpath_probe
    except ImportError:
        return None
    return fork_pythonpath_probe.WHERE


@step
def where(ctx):
    parent = open(f"/proc/{os.getppid()}/cmdline", "rb").read().split(b"\\0")
    print("facts", json.dumps({
        "parent": [part.decode() for part in parent if part],
        "session_leader": os.getsid(0) == os.getpid(),
        "marker": os.environ.get("LOOPML_FORK_TEST_MARKER"),
        "cwd": os.getcwd(),
        "from_pythonpath": _probe(),
    }), flush=True)
    return {}


@step
def sleeps_with_a_child(ctx):
    child = subprocess.Popen(["sleep", "300"])
    print("grandchild", child.pid, flush=True)
    time.sleep(300)
    return {}
"""


@pytest.fixture
def task_for(tmp_path: Path) -> Any:
    return task_maker(tmp_path, "fork_steps", STEPS)


def _facts(executor: LocalExecutor, task_for: Any) -> dict[str, Any]:
    handle = executor.start(task_for("where", {}, {}))
    try:
        outcome = finish(handle)
        assert outcome.ok, (outcome.error, handle.read_log())
        line = handle.read_log().split(b"facts ", 1)[1].split(b"\n", 1)[0]
        return json.loads(line)
    finally:
        handle.close()


@pytest.fixture
def executor() -> Iterator[LocalExecutor]:
    made = LocalExecutor(LocalExecutorConfig(stop_grace_s=1.0))
    yield made
    made.close()


def test_a_step_is_forked_from_the_server_with_the_workers_environment_now(
    executor: LocalExecutor, task_for: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set after the server started: each step gets the environment of the moment it starts,
    # PYTHONPATH on its import path as a fresh interpreter would have it.
    monkeypatch.setenv("LOOPML_FORK_TEST_MARKER", "set-later")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(_probe(tmp_path / "on-pythonpath")))
    facts = _facts(executor, task_for)
    assert facts["parent"][1:3] == ["-m", "loopml.pipelines._forkserver"], facts
    assert facts["session_leader"] is True
    assert facts["marker"] == "set-later"
    assert facts["cwd"] == str(tmp_path)
    assert facts["from_pythonpath"] == str(tmp_path / "on-pythonpath")


def _probe(folder: Path) -> Path:
    folder.mkdir()
    (folder / "fork_pythonpath_probe.py").write_text(f"WHERE = {str(folder)!r}\n")
    return folder


def test_with_the_fork_server_off_a_step_is_a_fresh_interpreter(
    task_for: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(_probe(tmp_path / "on-pythonpath")))
    fresh = LocalExecutor(LocalExecutorConfig(fork_server=False))
    facts = _facts(fresh, task_for)
    assert facts["parent"] == psutil.Process().cmdline(), facts  # this process: the worker
    assert facts["session_leader"] is True


def _child_pid(handle: LocalHandle) -> int:
    eventually(
        lambda: b"grandchild " in handle.read_log(),
        60,
        "the step to print its child's pid",
        describe=handle.read_log,
    )
    return int(handle.read_log().split(b"grandchild ", 1)[1].split()[0])


def _ended(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stop_ends_the_step_and_its_children(executor: LocalExecutor, task_for: Any) -> None:
    handle = executor.start(task_for("sleeps_with_a_child", {}, {}))
    try:
        grandchild = _child_pid(handle)
        assert psutil.pid_exists(grandchild)
        handle.stop()
        outcome = handle.wait(5)
        assert outcome is not None
        assert not outcome.ok
        eventually(lambda: _ended(grandchild), 60, f"the step's own child {grandchild} to end")
    finally:
        handle.close()


def test_a_dead_server_fails_its_steps_and_the_next_step_gets_a_new_one(
    executor: LocalExecutor, task_for: Any
) -> None:
    handle = executor.start(task_for("sleeps_with_a_child", {}, {}))
    try:
        grandchild = _child_pid(handle)
        server = _forked.server_for(sys.executable)
        os.kill(server.pid, signal.SIGKILL)
        outcome = finish(handle, timeout_s=30)
        assert not outcome.ok
        assert outcome.error is not None
        assert outcome.error.retryable
    finally:
        handle.close()
        # Orphaned, the step exits by itself; its own children are left, as they are when
        # the worker dies (the step's process is what the server's death ends).
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)
    facts = _facts(executor, task_for)
    assert facts["parent"][1:3] == ["-m", "loopml.pipelines._forkserver"]
    assert _forked.server_for(os.sys.executable) is not server  # type: ignore[attr-defined]
