"""Worker processes under fire: SIGKILL mid-step, SIGSTOP past the lease, and two workers
claiming from one PostgreSQL queue (RELIABILITY 18-21)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from loopml.core.pipelines import AttemptStatus, PipelineRun, RunStatus, StepStatus
from loopml.pipelines import service
from loopml.store import MetadataStore, events

from .conftest import LOOPML, base_env

pytestmark = pytest.mark.e2e

LEASE_S = 1.5
HEARTBEAT_S = 0.3
STEPS = """
import os, time
from pathlib import Path
from loopml.pipelines import step

@step
def work(ctx, seconds, folder):
    folder = Path(folder)
    (folder / f"started-{ctx.attempt}").write_text(str(os.getpid()))
    time.sleep(seconds)
    # The side effect is keyed on the idempotency key: a retry never repeats it.
    ledger = folder / "ledger"
    done = ledger.read_text().splitlines() if ledger.exists() else []
    if not any(line.startswith(ctx.idempotency_key) for line in done):
        with ledger.open("a") as out:
            out.write(f"{ctx.idempotency_key} {ctx.step} attempt={ctx.attempt}\\n")
    return {"attempt": ctx.attempt, "pid": os.getpid()}
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "chaos_steps.py").write_text(textwrap.dedent(STEPS))
    return tmp_path


def _env(home: Path, database_url: str | None) -> dict[str, str]:
    env = base_env(home / "loopml-home")
    env["PYTHONPATH"] = str(home / "code")
    if database_url:
        env["LOOPML_DATABASE_URL"] = database_url
    return env


@contextmanager
def worker(
    home: Path, name: str, database_url: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``loopml worker`` as a process of its own, with a short lease."""
    log = (home / f"{name}.log").open("wb")
    process = subprocess.Popen(
        [
            *LOOPML,
            "worker",
            "--id",
            name,
            "--lease",
            str(LEASE_S),
            "--heartbeat",
            str(HEARTBEAT_S),
            "--poll",
            "0.05",
            "--sweep",
            "0.2",
            "--concurrency",
            "2",
        ],
        env=_env(home, database_url),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _store(home: Path, database_url: str | None) -> MetadataStore:
    url = database_url or f"sqlite:///{home / 'loopml-home' / 'loopml.db'}"
    store = MetadataStore(url)
    store.upgrade()
    return store


def _start(store: MetadataStore, folder: Path, seconds: float, steps: int = 1) -> str:
    body = "\n".join(
        f"  - {{name: s{i:02d}, python: 'chaos_steps:work',"
        f" outputs: {{attempt: integer, pid: integer}},"
        f" with: {{seconds: {seconds}, folder: '{folder}'}}, retries: {{count: 2, backoff: 0.2}}}}"
        for i in range(steps)
    )
    service.apply_spec(store, "default", f"name: chaos\nsteps:\n{body}\n", actor="t")
    return service.start_run(store, "default", "chaos", {}, actor="t").id


def _wait_for(path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _wait_run(store: MetadataStore, run_id: str, timeout_s: float = 60) -> PipelineRun:
    deadline = time.monotonic() + timeout_s
    while True:
        found = service.get_run(store, "default", run_id)
        if found.status.finished:
            return found
        assert time.monotonic() < deadline, f"run still {found.status}"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_worker_killed_mid_step_leaves_it_to_be_retried_once(home: Path) -> None:
    store = _store(home, None)
    run_id = _start(store, home, seconds=2.5)
    with worker(home, "doomed") as first:
        _wait_for(home / "started-1")
        child = int((home / "started-1").read_text())
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed = time.monotonic()
        # The step's process notices its worker died, and stops with it.
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
        with worker(home, "rescuer"):
            while step_status(store, run_id) == StepStatus.RUNNING:
                # The lease's expiry plus the rescuer's own start (seconds on a loaded
                # machine), far under the minutes a missed reclaim would take.
                assert time.monotonic() - killed < LEASE_S + 8, "the step stayed RUNNING"
                time.sleep(0.05)
            run = _wait_run(store, run_id)
        # The dead worker's attempt folder (its task file holds secrets) was removed.
        assert not list(Path(tempfile.gettempdir()).glob(f"loopml-attempt-{first.pid}-*"))
    step = run.steps[0] if run.steps else None
    assert run.status == RunStatus.SUCCEEDED
    assert step is not None
    assert step.outputs is not None
    assert step.outputs["attempt"] == 2
    assert [(a.worker, a.status) for a in step.attempts] == [
        ("doomed", AttemptStatus.LOST),
        ("rescuer", AttemptStatus.SUCCEEDED),
    ]
    assert (home / "ledger").read_text().splitlines() == [f"{step.id} s00 attempt=2"]
    store.dispose()


def step_status(store: MetadataStore, run_id: str) -> StepStatus:
    found = service.get_run(store, "default", run_id)
    return (found.steps or [])[0].status


def test_a_stopped_worker_past_its_lease_cannot_commit(home: Path) -> None:
    store = _store(home, None)
    run_id = _start(store, home, seconds=1.5)
    with worker(home, "sleepy") as stale:
        _wait_for(home / "started-1")
        stale.send_signal(signal.SIGSTOP)
        with worker(home, "awake"):
            run = _wait_run(store, run_id)
            assert run.status == RunStatus.SUCCEEDED
            # The stale attempt's process finished meanwhile; its worker wakes up to commit.
            stale.send_signal(signal.SIGCONT)
            deadline = time.monotonic() + 10
            log = home / "sleepy.log"
            while b"lost its lease" not in log.read_bytes():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
    after = service.get_run(store, "default", run_id)
    step = (after.steps or [])[0]
    assert after.status == RunStatus.SUCCEEDED
    assert step.outputs is not None
    assert step.outputs["attempt"] == 2
    assert [(a.worker, a.status) for a in step.attempts] == [
        ("sleepy", AttemptStatus.LOST),
        ("awake", AttemptStatus.SUCCEEDED),
    ]
    assert b"s00 attempt 1 lost its lease: its result was not recorded" in log.read_bytes()
    with store.session() as session:
        types = [e.type for e in events.list_(session, type="pipeline.*").items]
    assert types.count("pipeline.step.succeeded") == 1
    assert types.count("pipeline.run.succeeded") == 1
    # Exactly one attempt's side effect: the first one's (its key was already there).
    assert len((home / "ledger").read_text().splitlines()) == 1
    store.dispose()


@pytest.mark.postgres
def test_two_workers_on_postgres_never_run_a_step_twice(home: Path, postgres_url: str) -> None:
    store = _store(home, postgres_url)
    with worker(home, "one", postgres_url), worker(home, "two", postgres_url):
        for name in ("one", "two"):  # both ready before there is work to race for
            deadline = time.monotonic() + 60
            while b"pipeline worker" not in (home / f"{name}.log").read_bytes():
                assert time.monotonic() < deadline, (home / f"{name}.log").read_text()
                time.sleep(0.05)
        run_id = _start(store, home, seconds=0.3, steps=16)
        run = _wait_run(store, run_id, timeout_s=120)
    assert run.status == RunStatus.SUCCEEDED
    steps = run.steps or []
    assert all(s.attempt == 1 and len(s.attempts) == 1 for s in steps)
    assert {a.worker for s in steps for a in s.attempts} == {"one", "two"}
    lines = (home / "ledger").read_text().splitlines()
    assert sorted(line.split()[1] for line in lines) == [f"s{i:02d}" for i in range(16)]
    store.dispose()
