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
from tests.waiting import eventually

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
    # The caller's PYTHONPATH stays after the steps' folder (a checkout's src/ comes first).
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(home / "code"), os.environ.get("PYTHONPATH", "")) if p
    )
    if database_url:
        env["LOOPML_DATABASE_URL"] = database_url
    return env


@contextmanager
def worker(
    home: Path, name: str, database_url: str | None = None, lease_s: float = LEASE_S
) -> Iterator[subprocess.Popen[bytes]]:
    """``loopml worker`` as a process of its own, with a short lease (heartbeats at a
    fifth of it)."""
    log = (home / f"{name}.log").open("wb")
    process = subprocess.Popen(
        [
            *LOOPML,
            "worker",
            "--id",
            name,
            "--lease",
            str(lease_s),
            "--heartbeat",
            str(HEARTBEAT_S * lease_s / LEASE_S),
            "--poll",
            "0.05",
            "--sweep",
            "0.2",
            "--concurrency",
            "2",
        ],
        # One thread for torch in a step, so the worker's heartbeats keep the other core.
        env=_env(home, database_url) | {"OMP_NUM_THREADS": "1"},
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
    eventually(path.exists, timeout_s, f"{path} to appear", interval_s=0.02)


def _wait_run(store: MetadataStore, run_id: str, timeout_s: float = 60) -> PipelineRun:
    return eventually(
        lambda: (found := service.get_run(store, "default", run_id)).status.finished and found,
        timeout_s,
        f"run {run_id} to finish",
        describe=lambda: service.get_run(store, "default", run_id).status,
    )


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
        # The step's process notices its worker died, and stops with it.
        eventually(lambda: not _alive(child), 60, f"the step's process {child} to stop")
        with worker(home, "rescuer"):
            # The lease expires and the rescuer reclaims the step: its attempts, checked
            # below, say the first was LOST and the rescuer's succeeded.
            eventually(
                lambda: step_status(store, run_id) != StepStatus.RUNNING,
                120,
                "the killed worker's step to be reclaimed",
            )
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
    # A 4 s lease (heartbeats every 0.8 s), not 1.5 s: on a loaded machine the sleepy
    # worker's own heartbeats must keep its lease until it is stopped, and its step (3 s)
    # must still be running when the test stops the worker, then write its side effect
    # long before the reclaimed attempt (after the lease, plus 3 s) looks for it. With 1.5 s
    # and 1.5 s this failed once in a fresh-clone run with both cores busy: those are the two
    # timings a loaded machine can break.
    store = _store(home, None)
    run_id = _start(store, home, seconds=3)
    with worker(home, "sleepy", lease_s=4) as stale:
        _wait_for(home / "started-1")
        stale.send_signal(signal.SIGSTOP)
        with worker(home, "awake", lease_s=4):
            run = _wait_run(store, run_id)
            assert run.status == RunStatus.SUCCEEDED
            # The stale attempt's process finished meanwhile; its worker wakes up to commit.
            stale.send_signal(signal.SIGCONT)
            log = home / "sleepy.log"
            eventually(
                lambda: b"lost its lease" in log.read_bytes(),
                60,
                "the stale worker to log that it lost its lease",
                describe=log.read_text,
            )
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
            log = home / f"{name}.log"
            eventually(
                lambda log=log: b"pipeline worker" in log.read_bytes(),
                60,
                f"worker {name} to start",
                describe=log.read_text,
            )
        run_id = _start(store, home, seconds=0.3, steps=16)
        run = _wait_run(store, run_id, timeout_s=120)
    assert run.status == RunStatus.SUCCEEDED
    steps = run.steps or []
    assert all(s.attempt == 1 and len(s.attempts) == 1 for s in steps)
    assert {a.worker for s in steps for a in s.attempts} == {"one", "two"}
    lines = (home / "ledger").read_text().splitlines()
    assert sorted(line.split()[1] for line in lines) == [f"s{i:02d}" for i in range(16)]
    store.dispose()


TEXT_OPTIONS = {
    "method": "finetune",
    "epochs": 6,
    "batch_size": 8,
    "tiny": {"vocab_size": 300, "dim": 32, "layers": 2, "heads": 2, "hidden": 64},
    "checkpoint_every_steps": 4,
    "checkpoint_every_s": 0,
}
TEXT_LOOP = """\
name: text-loop
steps:
  - name: train
    uses: train_text
    with:
      dataset: reviews_snap
      target: sentiment
      task: text-classification
      params: {options}
    retries: {{count: 2, backoff: 0.2}}
  - name: register
    uses: register
    with: {{run: "${{{{ steps.train.outputs.run }}}}", model: sent}}
  - name: evaluate
    uses: evaluate
    with: {{model: "${{{{ steps.register.outputs.model }}}}"}}
"""


def _checkpoints(home: Path) -> list[int]:
    """The steps of the complete fine-tune checkpoints in the home's artifacts, ascending."""
    found = (home / "loopml-home").rglob("checkpoints/*/*/_COMPLETE")
    return sorted(int(p.parent.name) for p in found)


@pytest.mark.timeout(300)  # two workers and two fine-tunes, each importing torch
def test_a_fine_tune_killed_with_its_worker_resumes_from_its_checkpoint(home: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import json

    from loopml.sdk.training import train_model
    from loopml.settings import Settings
    from loopml.train.tracking.runs import get_run
    from tests.text_data import ingest_reviews, reviews

    settings = Settings(home=home / "loopml-home")
    ingest_reviews(settings, "reviews", reviews(160), stratify="sentiment")
    store = _store(home, None)
    spec = TEXT_LOOP.format(options=json.dumps(TEXT_OPTIONS))
    service.apply_spec(store, "default", spec, actor="t")
    run_id = service.start_run(store, "default", "text-loop", {}, actor="t").id
    # A longer lease than the other tests': a fine-tune loads both cores of a small machine.
    with worker(home, "doomed", lease_s=4) as first:
        eventually(
            lambda: _checkpoints(home) or first.poll() is not None,
            120,
            "a checkpoint",
            interval_s=0.005,
        )
        assert first.poll() is None, (home / "doomed.log").read_text()
        first.send_signal(signal.SIGKILL)
        first.wait()
        time.sleep(1)  # the step's process notices its worker died within 0.2 s, and stops
        left = _checkpoints(home)
        # 120 training rows in batches of 8 for 6 epochs: 90 steps.
        assert left, "the checkpoint was dropped"
        assert left[-1] < 90, "the fine-tune finished before its worker was killed"
        with worker(home, "rescuer", lease_s=4):
            run = _wait_run(store, run_id, timeout_s=90)
    assert run.status == RunStatus.SUCCEEDED, run.error
    steps = {s.name: s for s in run.steps or []}
    train = steps["train"]
    assert [(a.worker, a.status) for a in train.attempts] == [
        ("doomed", AttemptStatus.LOST),
        ("rescuer", AttemptStatus.SUCCEEDED),
    ]
    assert train.outputs is not None
    assert train.outputs["metrics"]["resumed_from_step"] == left[-1]
    tags = get_run(store, "default", train.outputs["run"]).tags or {}
    assert tags["loopml.resumed_from_step"] == str(left[-1])
    assert _checkpoints(home) == [], "a finished fine-tune leaves no checkpoint behind"

    straight = train_model(
        "reviews_snap",
        target="sentiment",
        task="text-classification",
        params=TEXT_OPTIONS,
        checkpoint_key="uninterrupted",
        register_as="sent",
        settings=settings,
    )
    assert straight.resumed_from is None
    assert straight.evaluation is not None
    evaluated = steps["evaluate"].outputs
    assert evaluated is not None
    assert evaluated["model"] == "sent/1"
    for name, value in straight.evaluation.metrics.items():
        assert evaluated["metrics"][name] == pytest.approx(value, abs=1e-5), name
    store.dispose()
