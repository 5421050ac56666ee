"""loopml on five hosts (network namespaces on one machine, ``scripts/topology.py``, one
topology for the module): the database and S3 on ``db``, two platforms sharing them, two
worker hosts each with a Ray node and a ``loopml worker --executor ray``. A 5M-row table is
batch-scored on Ray through a platform, by an actor on each worker host. A worker host dies
mid-step (every process in its namespaces SIGKILLed): its step is retried on the other host
and the run succeeds, no step run twice to completion. Then a platform dies while a schedule,
triggers and the monitor run: the other fires the next ticks, reads the events past each
trigger's cursor and takes the monitor's lease over; no tick fires twice, no event is lost
or fired twice, no request is counted twice in the monitor's windows. Needs root; skipped
(failed under ``LOOPML_REQUIRE_SERVICES=1``) where ``ip netns`` is not allowed."""

from __future__ import annotations

import contextlib
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest
from scripts.topology import (
    ADMIN,
    ADMIN_PASSWORD,
    Topology,
    TopologyError,
    down,
    up,
    why_not_here,
)
from sqlalchemy import text

from loopml.client import Client
from loopml.core.automation import FiringOutcome
from loopml.core.clock import utcnow
from loopml.core.deployments import DeploymentStatus
from loopml.core.errors import NotFoundError
from loopml.core.pipelines import AttemptStatus, PipelineRun, RunStatus
from loopml.data import lake
from loopml.monitor import service as monitor_service
from loopml.pipelines import automation_service, service
from loopml.settings import load_settings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events
from loopml.wiring import open_artifact_store
from tests.conftest import missing_service
from tests.unit.deploy.deploy_support import (
    PackageFiles,
    cancer_frame,
    package_files,
    register_files,
)
from tests.waiting import eventually

# Its own PostgreSQL and S3 on the db host: not the postgres and s3 markers' services.
# A story: the 5M-row scoring needs both worker hosts, the parallel steps kill w1, the
# schedule kills p1 (tests/conftest.py keeps the file's order under pytest-randomly).
pytestmark = [pytest.mark.e2e, pytest.mark.ray, pytest.mark.story, pytest.mark.timeout(300)]
BIG_ROWS = 5_000_000

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
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Future[PackageFiles]]:
    """The model the monitor's deployment serves, packaged in a thread while the topology
    comes up (10 to 35 s of imports, fitting and ONNX export on a busy 2-core machine)."""
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(package_files, tmp_path_factory.mktemp("package") / "pkg")


@pytest.fixture(scope="module")
def topology(package: Future[PackageFiles]) -> Iterator[Topology]:
    # ``package`` is asked for only to start first, and overlap the topology's start.
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
    return eventually(
        lambda: len(found := sorted(folder.glob(pattern))) >= count and found,
        timeout_s,
        f"{count} files {pattern} in {folder}",
        interval_s=0.1,
        describe=lambda: [p.name for p in folder.glob(pattern)],
    )


def _explain(topology: Topology, store: MetadataStore, run_id: str) -> None:
    run = service.get_run(store, "default", run_id)
    print(f"[multihost] {run.status}: {[(s.name, s.status, s.attempts) for s in run.steps]}")
    for name in ("worker-w1", "worker-w2", "ray-w1", "ray-w2"):
        lines = topology.logs(name, tail=200_000).splitlines()
        print(f"[multihost] {name}:", *[x for x in lines if "state-dump" not in x][-15:], sep="\n")


def _wait_run(store: MetadataStore, run_id: str, timeout_s: float) -> PipelineRun:
    # The caller explains a run still unfinished (the workers' logs) before failing.
    with contextlib.suppress(AssertionError):
        eventually(
            lambda: service.get_run(store, "default", run_id).status.finished,
            timeout_s,
            f"run {run_id} to finish",
            interval_s=0.2,
        )
    return service.get_run(store, "default", run_id)


def _big_table(rows: int) -> pa.Table:
    """``rows`` rows like the cancer data's 8 columns (resampled, with 2 % noise)."""
    frame, _ = cancer_frame()
    rng = np.random.default_rng(0)
    picked = frame.to_numpy()[rng.integers(0, len(frame), rows)]
    picked *= rng.normal(1.0, 0.02, picked.shape)
    return pa.table({name: picked[:, i] for i, name in enumerate(frame.columns)})


def test_a_5m_row_table_is_scored_on_ray_across_both_worker_hosts(
    topology: Topology, store: MetadataStore, package: Future[PackageFiles]
) -> None:
    """``loopml predict --on ray`` through p1 (the driver: its settings name the cluster)
    over a 5M-row table in S3, in four Delta files: one actor on each worker host reads
    its row groups from S3 and scores them, p1 writes the output as one commit. First in
    the module, while both worker hosts live."""
    artifacts = _artifacts(topology)
    register_files(store, artifacts, package.result(timeout=120), name="scorer")
    table = _big_table(BIG_ROWS)
    part = BIG_ROWS // 4
    for start in range(0, BIG_ROWS, part):
        lake.ingest_arrow(store, artifacts, "default", "big", table.slice(start, part), actor="t")
    del table

    with _client(topology, "p1") as client:
        started = time.monotonic()
        result = client.predictions.batch("big", "big_scored", model="scorer/1", on="ray")
        took = time.monotonic() - started
        # The figure beside it: the same rows scored in p1's process (nothing asserted).
        started = time.monotonic()
        local = client.predictions.batch("big", "big_local", model="scorer/1")
        here = time.monotonic() - started
    print(
        f"\n[multihost] {result.rows:,} rows scored on Ray in {took:.1f} s "
        f"({result.rows / took:,.0f} rows/s): {result.ray_nodes}; in p1's process "
        f"{here:.1f} s ({local.rows / here:,.0f} rows/s)",
        file=sys.stderr,
    )

    assert (result.rows, result.output_version) == (BIG_ROWS, 0)
    assert set(result.ray_nodes) == {topology.ip("w1"), topology.ip("w2")}
    assert sum(result.ray_nodes.values()) == BIG_ROWS
    assert min(result.ray_nodes.values()) >= BIG_ROWS // 4  # both took a fair share
    written = lake.get_table(store, artifacts, "default", "big_scored")
    assert (written.version, written.row_count) == (0, BIG_ROWS)


def _artifacts(topology: Topology) -> ArtifactStore:
    return open_artifact_store(
        load_settings(
            database={"url": topology.database_url}, artifacts=topology.artifact_settings()
        )
    )


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
    artifacts = _artifacts(topology)
    for name, found in steps.items():
        if len(found.attempts) > 1:
            try:
                _, text = service.read_log(store, artifacts, "default", run_id, name, attempt=1)
            except NotFoundError:  # its worker died before its first heartbeat uploaded it
                text = b"(none uploaded)"
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
    eventually(
        lambda: len(automation_service.schedule_history(store, "default", "each-tick")) >= count,
        timeout_s,
        f"{count} firings of each-tick",
        interval_s=0.1,
    )
    took = time.monotonic() - start
    time.sleep(2.5)  # more automation rounds, in which nothing may fire again
    fired = len(automation_service.schedule_history(store, "default", "each-tick"))
    assert fired == count, f"each-tick fired {fired} times, not {count}"
    return took


DEPLOYMENT = "watched"
PHASES = ("early", "late", "racing", "after")
"""When each phase's trigger gets its one event (a record appended to its table): after the
first tick (through p1), just before p1 dies (through p1, so p1's engine may be reading it
when it dies), while p1 dies (through p2), after (through p2)."""


def _triggers(store: MetadataStore) -> int:
    """A trigger per phase, on its table; one on every append (the prediction log's too).
    Returns the event id that one reads past."""
    for phase in PHASES:
        automation_service.create_trigger(
            store, "default", name=f"on-{phase}", pipeline="ticks", on="table.appended",
            where={"table": f"ev_{phase}"}, actor="t",
        )  # fmt: skip
    every = automation_service.create_trigger(
        store, "default", name="on-every", pipeline="ticks", on="table.appended", actor="t"
    )
    with store.session() as session:
        query = text("SELECT cursor FROM pipeline_triggers WHERE id = :id")
        return int(session.execute(query, {"id": every.id}).scalar_one())


def _append(client: Client, phase: str) -> None:
    client.tables.append_records("default", f"ev_{phase}", [{"phase": phase}])


def _deploy(
    topology: Topology, store: MetadataStore, package: Future[PackageFiles], client: Client
) -> float:
    """``cancer/1`` deployed through p2 (whose gateway serves it) and 20 requests answered,
    counted by p1's monitor (it started first, so it holds the lease); seconds it took."""
    start = time.monotonic()
    artifacts = _artifacts(topology)
    register_files(store, artifacts, package.result(timeout=120), name="cancer")
    client.deployments.create(DEPLOYMENT, "cancer/1")
    eventually(
        lambda: client.deployments.get(DEPLOYMENT).status == DeploymentStatus.READY,
        120,
        f"{DEPLOYMENT} to be READY",
        interval_s=0.2,
        describe=lambda: client.deployments.get(DEPLOYMENT).status,
    )
    _wait_counted(store, _send(client, 20), timeout_s=60)
    assert _monitoring(topology) == ["p1"]
    return time.monotonic() - start


def _client(topology: Topology, host: str) -> Client:
    with Client(topology.url(host)) as anonymous:
        token = anonymous.login(ADMIN, ADMIN_PASSWORD)["token"]
    return Client(topology.url(host), token=token)


def _send(client: Client, requests: int) -> int:
    """``requests`` predictions of 3 rows each through p2's gateway; how many."""
    rows = cancer_frame()[0].head(3).to_dict("records")
    for _ in range(requests):
        assert len(client.deployments.predict(DEPLOYMENT, rows)["predictions"]) == 3
    return requests


def _counted(store: MetadataStore, size: str) -> tuple[int, int]:
    """The rows and requests in the deployment's windows of ``size``, each window once."""
    found = monitor_service.list_windows(store, "default", DEPLOYMENT, size=size, limit=500)
    starts = [(w["model"], w["version"], w["start"]) for w in found]
    assert len(starts) == len(set(starts)), f"a {size} window listed twice: {sorted(starts)}"
    return sum(w["rows"] for w in found), sum(w["summary"]["usage"]["requests"] for w in found)


def _wait_counted(store: MetadataStore, requests: int, timeout_s: float) -> float:
    """Seconds until the 1-minute windows hold ``requests`` requests' rows."""
    start = time.monotonic()
    eventually(
        lambda: _counted(store, "1m")[0] >= 3 * requests,
        timeout_s,
        f"{3 * requests} rows counted in the 1-minute windows",
        interval_s=0.2,
        describe=lambda: f"{_counted(store, '1m')[0]} counted",
    )
    return time.monotonic() - start


def _monitoring(topology: Topology) -> list[str]:
    """The platforms whose monitor has taken the database's monitor lease (their log says)."""
    logs = {h: topology.path / f"home-{h}" / "logs" / "loopml.log" for h in ("p1", "p2")}
    return [
        host
        for host, log in logs.items()
        if log.exists() and "now runs the monitor" in log.read_text(errors="replace")
    ]


def test_a_schedule_fires_once_per_tick_and_from_p2_when_p1_dies(
    topology: Topology, store: MetadataStore, package: Future[PackageFiles]
) -> None:
    """Schedules, triggers and the monitor while p1 dies: p2 fires the next ticks and
    reads the events past each trigger's cursor, and its monitor takes the lease over; no
    tick fires twice, every event fires its triggers once, every request's rows are in the
    windows once."""
    with (
        _client(topology, "p1") as on_p1,
        _client(topology, "p2") as on_p2,
        ThreadPoolExecutor(1) as pool,
    ):
        deployed = pool.submit(_deploy, topology, store, package, on_p2)  # while the ticks fire
        spec = "name: ticks\nsteps:\n  - {name: noop, python: 'multihost_steps:noop'}\n"
        service.apply_spec(store, "default", spec, actor="t")
        # Due once a year by its cron, so only the ticks this test makes due fire: with
        # "* * * * *" a minute boundary passing while the test runs fired a tick of its own
        # (CI: 3 firings where 2 were made due).
        schedule = automation_service.create_schedule(
            store, "default", name="each-tick", pipeline="ticks", cron="0 0 1 1 *", actor="t"
        )
        every_from = _triggers(store)
        # Both platforms' automation engines race for each tick: one fires it.
        for tick in range(1, 4):
            _due_now(store, schedule.id)
            _fired(store, tick, timeout_s=60)
            if tick == 1:
                _append(on_p1, "early")
        took = deployed.result(timeout=120)
        print(f"\n[multihost] deployed, 20 requests counted by p1 in {took:.1f} s", file=sys.stderr)
        sent = 20 + _send(on_p2, 10)  # within the monitor's lag: left for p2 to count
        _append(on_p1, "late")
        racing = pool.submit(_append, on_p2, "racing")
        killed_at, dead_since = time.monotonic(), utcnow()
        assert topology.kill_host("p1")
        assert topology.host_pids("p1") == []
        racing.result(timeout=30)
        # p2 alone fires the next ticks, within its next automation rounds.
        for tick in range(4, 6):
            _due_now(store, schedule.id)
            took = _fired(store, tick, timeout_s=60)
            print(f"[multihost] tick {tick} fired {took:.1f} s after due, p1 dead", file=sys.stderr)
        history = automation_service.schedule_history(store, "default", "each-tick")
        assert len({firing.time for firing in history}) == 5
        _append(on_p2, "after")
        sent += _send(on_p2, 20)
    # p2's monitor takes the lease once p1's has run out (30 s after p1's last round).
    eventually(
        lambda: _monitoring(topology) == ["p1", "p2"],
        150,
        "p2's monitor to take the lease over",
        interval_s=0.2,
        describe=lambda: _monitoring(topology),
    )
    took = time.monotonic() - killed_at
    print(f"[multihost] p2 runs the monitor {took:.1f} s after p1 died", file=sys.stderr)
    _wait_counted(store, sent, timeout_s=60)
    time.sleep(2.5)  # more rounds of p2's monitor: nothing is counted again
    for size in ("1m", "1h"):
        assert _counted(store, size) == (3 * sent, sent), size
    _check_triggers(store, every_from, dead_since)


def _check_triggers(store: MetadataStore, every_from: int, dead_since: datetime) -> None:
    """Each phase's event started one run; every append fired ``on-every`` once, those after
    p1 died from p2 (the only engine left), so its cursor passed to p2."""
    with store.session() as session:
        appended = events.list_(
            session, type="table.appended", project="default", cursor=str(every_from), limit=1000
        ).items
    for phase in PHASES:
        (event,) = [e for e in appended if e.subject == f"ev_{phase}"]
        (firing,) = automation_service.trigger_history(store, "default", f"on-{phase}")
        assert (firing.event_id, firing.outcome) == (event.id, FiringOutcome.STARTED), phase
        assert firing.run_id is not None
        run = service.get_run(store, "default", firing.run_id)
        assert (run.pipeline, run.actor) == ("ticks", f"trigger:on-{phase}")
    fired = eventually(
        lambda: (
            len(found := automation_service.trigger_history(store, "default", "on-every", 1000))
            >= len(appended)
            and found
        ),
        60,
        f"{len(appended)} firings of on-every",
        interval_s=0.2,
    )
    assert sorted(f.event_id or 0 for f in fired) == [e.id for e in appended]
    after = next(e.id for e in appended if e.subject == "ev_after")
    assert next(f for f in fired if f.event_id == after).time > dead_since
    print(f"[multihost] on-every fired {len(fired)} times, once per append", file=sys.stderr)
