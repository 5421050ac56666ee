"""loopml on five hosts (network namespaces on one machine, ``scripts/topology.py``): the
database and S3 on ``db``, two platforms sharing them, two worker hosts each with a Ray node
and a ``loopml worker --executor ray``. A whole worker host dies mid-step (every process in
its namespace SIGKILLed): its step is retried on the other host and the run succeeds, with
no step run twice to completion. Needs root; skipped (failed under
``LOOPML_REQUIRE_SERVICES=1``) where ``ip netns`` is not allowed."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from scripts.topology import Topology, TopologyError, down, up, why_not_here

from loopml.core.pipelines import AttemptStatus, PipelineRun, RunStatus
from loopml.pipelines import service
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
    started = _wait_files(folder, "*-started-1", 2, timeout_s=60)
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

    assert run.status == RunStatus.SUCCEEDED, (run, topology.logs("worker-w2"))
    steps = {s.name: s for s in run.steps}
    assert steps[on_w2].outputs == {"attempt": 1, "host": topology.ip("w2")}
    assert steps[on_w1].outputs == {"attempt": 2, "host": topology.ip("w2")}
    first, retry = steps[on_w1].attempts
    print(f"[multihost] {first.worker}'s attempt on w1: {first.status}", file=sys.stderr)
    assert first.error is not None
    if first.worker == "worker-w1":  # the worker died with the node: its lease ran out
        assert first.status == AttemptStatus.LOST
        assert "worker-w1 stopped renewing its lease" in first.error.message
    else:  # worker-w2 ran it on w1's node, and saw the node die
        assert first.status == AttemptStatus.FAILED
        assert first.error.type in ("StepNodeDied", "StepProcessDied"), first.error
        assert topology.ip("w1") in first.error.message, first.error
    assert retry.status == AttemptStatus.SUCCEEDED
    assert retry.worker == "worker-w2"
    # What the platform recorded of where each attempt ran: the Ray node, with its address.
    artifacts = open_artifact_store(
        load_settings(
            database={"url": topology.database_url},
            artifacts=topology.artifact_settings(),
        )
    )
    for name, attempt in ((on_w2, 1), (on_w1, 2)):
        _, text = service.read_log(store, artifacts, "default", run_id, name, attempt=attempt)
        header = text.splitlines()[0].decode()
        assert header.startswith(f"[loopml] step {name!r} runs on Ray node "), header
        assert f"{topology.ip('w2')})" in header, header
    # No step ran twice to completion: the step killed on w1 never finished there.
    done = sorted(p.name for p in folder.glob("*-done-*"))
    assert done == sorted([f"{on_w2}-done-1", f"{on_w1}-done-2"])
