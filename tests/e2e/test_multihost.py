"""loopml on five hosts (network namespaces on one machine, ``scripts/topology.py``, one
topology for the module): the database and S3 on ``db``, two platforms sharing them, two
worker hosts each with a Ray node and a ``loopml worker --executor ray``. A worker host dies
mid-step (every process in its namespaces SIGKILLed): its step is retried on the other host
and the run succeeds, no step run twice to completion. Then a platform dies while a schedule
runs: the other fires its next ticks, and no tick fires twice. Needs root; skipped (failed
under ``LOOPML_REQUIRE_SERVICES=1``) where ``ip netns`` is not allowed."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from scripts.topology import Topology, TopologyError, down, up, why_not_here
from sqlalchemy import text

from loopml.core.clock import utcnow
from loopml.core.pipelines import AttemptStatus, PipelineRun, RunStatus
from loopml.pipelines import automation_service, service
from loopml.settings import load_settings
from loopml.store import MetadataStore
from loopml.wiring import open_artifact_store
from tests.conftest import missing_service

# Its own PostgreSQL and S3 on the db host: not the postgres and s3 markers' services.
pytestmark = [pytest.mark.e2e, pytest.mark.ray, pytest.mark.timeout(300)]

STEPS = """
import os, socket, time
from pathlib import Path
from loopml.pipelines import step

def this_host(db_ip):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((db_ip, 9))  # no packet sent: the address this host reaches db from
        return sock.getsockname()[0]

@step
def work(ctx, seconds, folder, db_ip):
    folder = Path(folder)
    host = this_host(db_ip)
    (folder / f"{ctx.step}-started-{ctx.attempt}").write_text(host)
    if ctx.attempt == 1:
        time.sleep(seconds)
    (folder / f"{ctx.step}-done-{ctx.attempt}").write_text(host)
    return {"attempt": ctx.attempt, "host": host}

@step
def noop(ctx):
    return {}
"""


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    reason = why_not_here()
    if reason:
        missing_service(reason)
    started = time.monotonic()
    try:
        topo = up(lease_s=3.0)
    except TopologyError as exc:
        pytest.fail(f"the topology did not start: {exc}")
    print(f"\n[multihost] up in {time.monotonic() - started:.1f} s: {topo.timing}", file=sys.stderr)
    (topo.path / "code" / "multihost_steps.py").write_text(textwrap.dedent(STEPS))
    try:
        yield topo
    finally:
        down(topo)


@pytest.fixture(scope="module")
def store(topology: Topology) -> Iterator[MetadataStore]:
    store = MetadataStore(topology.database_url)
    yield store
    store.dispose()


def _wait_files(folder: Path, pattern: str, count: int, timeout_s: float) -> list[Path]:
    deadline = time.monotonic() + timeout_s
    while len(found := sorted(folder.glob(pattern))) < count:
        assert time.monotonic() < deadline, f"only {[p.name for p in found]} after {timeout_s} s"
        time.sleep(0.1)
    return found


def _explain(topology: Topology, store: MetadataStore, run_id: str) -> None:
    run = service.get_run(store, "default", run_id)
    print(f"[multihost] {run.status}: {[(s.name, s.status, s.attempts) for s in run.steps]}")
    for name in ("worker-w1", "worker-w2", "ray-w1", "ray-w2"):
        lines = topology.logs(name, tail=200_000).splitlines()
        print(f"[multihost] {name}:", *[x for x in lines if "state-dump" not in x][-15:], sep="\n")


def _wait_run(store: MetadataStore, run_id: str, timeout_s: float) -> PipelineRun:
    deadline = time.monotonic() + timeout_s
    while True:
        run = service.get_run(store, "default", run_id)
        if run.status.finished or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


def test_parallel_steps_use_both_worker_hosts_and_survive_one_dying(
    topology: Topology, store: MetadataStore
) -> None:
    for host in ("p1", "p2"):  # both platforms serve, on the one database
        health = httpx.get(f"{topology.url(host)}/api/v1/health", timeout=10).json()
        assert health["checks"]["database"] == "ok", (host, health)
    folder = topology.path / "marks"
    folder.mkdir()
    given = f"{{seconds: 8, folder: '{folder}', db_ip: '{topology.ip('db')}'}}"
    spec = "name: two-hosts\nsteps:\n" + "".join(
        f"  - {{name: {name}, python: 'multihost_steps:work', with: {given},\n"
        "     outputs: {attempt: integer, host: string}, retries: {count: 1, backoff: 0.2}}\n"
        for name in ("a", "b")
    )
    applied = service.apply_spec(store, "default", spec, actor="t")
    run_id = service.start_run(store, "default", applied.pipeline.name, {}, actor="t").id

    # Each worker runs one step at once and each worker host's node has one CPU (the head
    # none): the two parallel steps start on both worker hosts.
    try:
        started = _wait_files(folder, "*-started-1", 2, timeout_s=60)
    except AssertionError:
        _explain(topology, store, run_id)
        raise
    hosts = {path.name.split("-")[0]: path.read_text() for path in started}
    assert set(hosts.values()) == {topology.ip("w1"), topology.ip("w2")}
    on_w1 = next(name for name, host in hosts.items() if host == topology.ip("w1"))
    on_w2 = next(name for name, host in hosts.items() if host != topology.ip("w1"))

    killed_at = time.monotonic()
    assert topology.kill_host("w1")
    assert topology.host_pids("w1") == []
    run = _wait_run(store, run_id, timeout_s=90)
    took = time.monotonic() - killed_at
    print(f"\n[multihost] run settled {took:.1f} s after w1 died", file=sys.stderr)

    steps = {s.name: s for s in run.steps}
    for name, found in steps.items():
        tried = [(a.worker, a.status.value, a.error and a.error.message) for a in found.attempts]
        print(f"[multihost] step {name} (started on {hosts[name]}): {tried}", file=sys.stderr)
    print(f"[multihost] marks {sorted(p.name for p in folder.iterdir())}", file=sys.stderr)
    artifacts = open_artifact_store(
        load_settings(
            database={"url": topology.database_url}, artifacts=topology.artifact_settings()
        )
    )
    for name, found in steps.items():
        if len(found.attempts) > 1:
            _, text = service.read_log(store, artifacts, "default", run_id, name, attempt=1)
            print(f"[multihost] {name} attempt 1 log:", text.decode()[-1500:], file=sys.stderr)
    assert run.status == RunStatus.SUCCEEDED
    # No step ran twice to completion: one "done" mark each, the killed attempt's never.
    done = sorted(p.name.split("-done-")[0] for p in folder.glob("*-done-*"))
    assert done == ["a", "b"]
    assert not (folder / f"{on_w1}-done-1").exists()
    for found in steps.values():  # every step ended on the surviving host
        assert found.outputs["host"] == topology.ip("w2")
    first, retry = steps[on_w1].attempts
    assert first.error is not None
    if first.worker == "worker-w1":  # the worker died with the node: its lease ran out
        assert first.status == AttemptStatus.LOST
        assert "worker-w1 stopped renewing its lease" in first.error.message
    else:  # worker-w2 ran it on w1's node, and saw the node die
        assert first.status == AttemptStatus.FAILED
        assert topology.ip("w1") in first.error.message, first.error
    assert (retry.status, retry.worker) == (AttemptStatus.SUCCEEDED, "worker-w2")
    # What the platform recorded of where each attempt ran: the Ray node, with its address.
    for name in (on_w2, on_w1):  # each one's last attempt
        _, text = service.read_log(store, artifacts, "default", run_id, name)
        header = text.splitlines()[0].decode()
        assert header.startswith(f"[loopml] step {name!r} runs on Ray node "), header
        assert f"{topology.ip('w2')})" in header, header


def _due_now(store: MetadataStore, schedule_id: str) -> None:
    """The schedule's next tick, now: what the clock reaching it does, without waiting a
    minute for each."""
    with store.session() as session:
        session.execute(
            text("UPDATE pipeline_schedules SET next_fire_at = :at WHERE id = :id"),
            {"at": utcnow() - timedelta(seconds=1), "id": schedule_id},
        )


def _fired(store: MetadataStore, count: int, timeout_s: float) -> float:
    """Seconds until the schedule has fired ``count`` times in all; then, after a few more
    automation rounds of every platform (1 s each), still ``count`` times."""
    start = time.monotonic()
    while len(automation_service.schedule_history(store, "default", "each-tick")) < count:
        assert time.monotonic() - start < timeout_s, f"fewer than {count} firings"
        time.sleep(0.1)
    took = time.monotonic() - start
    time.sleep(2.5)
    assert len(automation_service.schedule_history(store, "default", "each-tick")) == count
    return took


def test_a_schedule_fires_once_per_tick_and_from_p2_when_p1_dies(
    topology: Topology, store: MetadataStore
) -> None:
    spec = "name: ticks\nsteps:\n  - {name: noop, python: 'multihost_steps:noop'}\n"
    service.apply_spec(store, "default", spec, actor="t")
    # Due once a year by its cron, so only the ticks this test makes due fire: with
    # "* * * * *" a minute boundary passing while the test runs fired a tick of its own
    # (CI: 3 firings where 2 were made due).
    schedule = automation_service.create_schedule(
        store, "default", name="each-tick", pipeline="ticks", cron="0 0 1 1 *", actor="t"
    )
    # Both platforms' automation engines race for each tick: one fires it.
    for tick in range(1, 4):
        _due_now(store, schedule.id)
        _fired(store, tick, timeout_s=15)
    assert topology.kill_host("p1")
    assert topology.host_pids("p1") == []
    # p2 alone fires the next ticks, within its next automation rounds.
    for tick in range(4, 6):
        _due_now(store, schedule.id)
        took = _fired(store, tick, timeout_s=15)
        print(f"\n[multihost] tick {tick} fired {took:.1f} s after due, p1 dead", file=sys.stderr)
    history = automation_service.schedule_history(store, "default", "each-tick")
    assert len({firing.time for firing in history}) == 5
