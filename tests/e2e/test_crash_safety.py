"""SIGKILL of ``loopml up`` at random points of an ingest, a training run's registration, a
deployment change and a pipeline run (RELIABILITY 32, issue 36): one home, killed round after
round (the platform's process group and every process under it), and after each restart
every lake table is at a committed version with no torn write, every READY model version and
logged model verifies against its manifest, every deployment settles, and every pipeline run
reaches its end.

The kill points come from a seeded RNG over each work's measured duration: the seed and the
delays are printed, and ``LOOPML_TEST_CRASH_SEED=N`` replays a run."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from deltalake import DeltaTable
from sqlalchemy import select

from loopml.client import Client
from loopml.core import layout
from loopml.core.deployments import DeploymentStatus
from loopml.core.errors import NotFoundError
from loopml.registry._verify import verify_package
from loopml.storage import LocalArtifactStore
from loopml.store import MetadataStore
from loopml.store.orm import (
    LakeTableRow,
    LoggedModelRow,
    ModelVersionRow,
    RunRow,
)
from tests.unit.deploy.deploy_support import PackageFiles, instances, package_files
from tests.waiting import eventually

from .conftest import RunningServer, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

LEASE_S = 2.0
HEARTBEAT_S = 2  # a training run's heartbeat timeout
# Short leases so a step whose worker died with the platform is taken back in seconds.
SETTINGS = {
    "LOOPML_WORKER_LEASE_S": str(LEASE_S),
    "LOOPML_WORKER_HEARTBEAT_S": "0.4",
    "LOOPML_WORKER_SWEEP_S": "0.5",
    "LOOPML_WORKER_POLL_S": "0.1",
    # ...and a training run whose client died with it is marked LOST in seconds.
    "LOOPML_SERVER_MAINTENANCE_INTERVAL_S": "0.5",
    "OMP_NUM_THREADS": "1",
}
KINDS = ("ingest", "register", "deploy", "pipeline")
ROUNDS = 8  # two kill points for each kind of work
ROWS = 100_000  # per ingest: a torn one would leave a round with fewer
SETTLE_S = 90.0  # after a restart, for a deployment to serve and a pipeline run to end
TABLE = "events"
DEPLOYMENT = "churn"
STEPS = """
import time
from loopml.pipelines import step

@step
def first(ctx, seconds):
    time.sleep(seconds)
    return {"n": 1}

@step
def second(ctx, n, seconds):
    time.sleep(seconds)
    return {"n": n + 1}
"""
PIPELINE = """\
name: twostep
outputs:
  n: ${{ steps.second.outputs.n }}
steps:
  - name: first
    python: crash_steps:first
    with: {seconds: 0.5}
    outputs: {n: integer}
    retries: {count: 3, backoff: 0.2}
  - name: second
    python: crash_steps:second
    with: {n: "${{ steps.first.outputs.n }}", seconds: 0.5}
    outputs: {n: integer}
    needs: [first]
    retries: {count: 3, backoff: 0.2}
"""


@dataclass
class Platform:
    """The home under test and what the work put in it."""

    home: Path
    package: PackageFiles
    rng: random.Random
    env: dict[str, str]
    durations: dict[str, float] = field(default_factory=dict)

    def say(self, line: str) -> None:
        print(line, flush=True)  # shown with a failure: the seed and each kill point


def _csv(platform: Platform, round_: int) -> Path:
    """The round's file to ingest, written before the clock starts."""
    path = platform.home / f"ingest-{round_}.csv"
    if not path.exists():
        lines = "".join(f"{round_},{i},{i * 0.25}\n" for i in range(ROWS))
        path.write_text("round,i,x\n" + lines)
    return path


def _ingest(client: Client, platform: Platform, round_: int) -> None:
    client.tables.ingest_file("default", TABLE, _csv(platform, round_))


def _register(client: Client, platform: Platform, round_: int) -> None:
    """What a training run does on a remote platform: upload the package, record it, end
    the run, register the model."""
    package = platform.package
    run = client.runs.create("crash", name=f"round-{round_}", heartbeat_timeout_s=HEARTBEAT_S)
    for name, data in package.files.items():
        client.runs.upload_artifact(run.id, f"model/{name}", data)
    client.runs.upload_artifact(run.id, "model/loopml-model.json", package.manifest)
    client.runs.record_model(
        run.id,
        path="model",
        flavor="sklearn",
        format="onnx",
        manifest_sha256=hashlib.sha256(package.manifest).hexdigest(),
        signature=json.loads(package.manifest)["signature"],
    )
    client.runs.end(run.id, "FINISHED")
    # A few versions of it: more of the work is the registry's own (insert, verify, settle).
    for _ in range(3):
        version = client.models.register_version("cancer", run_id=run.id)
        assert version.status == "READY", version


def _deploy(client: Client, platform: Platform, round_: int) -> None:
    """One change to the deployment: create it when absent, else update, scale or delete."""
    try:
        current = client.deployments.get(DEPLOYMENT)
    except NotFoundError:
        client.deployments.create(DEPLOYMENT, "cancer/1", min_replicas=1)
        client.deployments.wait(DEPLOYMENT, timeout_s=SETTLE_S)
        return
    change = platform.rng.choice(("update", "scale", "delete"))
    platform.say(f"  deployment change: {change}")
    if change == "delete":
        client.deployments.delete(DEPLOYMENT)
        return
    if change == "update":
        serving = current.revisions[-1].version if current.revisions else 1
        other = [v.version for v in _ready_versions(client) if v.version != serving]
        client.deployments.update(DEPLOYMENT, model=f"cancer/{other[-1] if other else serving}")
    else:
        client.deployments.scale(DEPLOYMENT, 2 if current.spec.min_replicas == 1 else 1)
    client.deployments.wait(DEPLOYMENT, timeout_s=SETTLE_S)


def _pipeline(client: Client, platform: Platform, round_: int) -> None:
    run = client.pipelines.run("twostep")
    _wait_run(client, run.id)


WORK: dict[str, Callable[[Client, Platform, int], None]] = {
    "ingest": _ingest,
    "register": _register,
    "deploy": _deploy,
    "pipeline": _pipeline,
}


def _ready_versions(client: Client) -> list[Any]:
    return list(client.models.versions("cancer", status="READY").items)


def _wait_run(client: Client, run_id: str, timeout_s: float = SETTLE_S) -> Any:
    """The run once finished. An error reading it is raised at once, not waited out: a
    client whose platform was killed must see it die (``_kill_during`` gives it 60 s)."""

    def finished() -> Any:
        try:
            run = client.pipelines.get_run(run_id)
        except Exception as exc:  # returned (true) to end the wait, raised below
            return exc
        return run if run.status.finished else None

    found = eventually(finished, timeout_s, f"pipeline run {run_id} to finish", interval_s=0.2)
    if isinstance(found, Exception):
        raise found
    return found


def _up(platform: Platform, round_: int) -> Any:
    return running_server(
        platform.home,
        platform.env,
        log_path=platform.home / f"server-{round_}.log",
        own_group=True,
    )


def _kill(server: RunningServer) -> None:
    """SIGKILL the platform's process group and every process under it (replicas, step
    processes and stream consumers run in sessions of their own), as an OOM kill of the
    container would; returns once all of them are gone."""
    family = psutil.Process(server.process.pid).children(recursive=True)
    os.killpg(server.process.pid, signal.SIGKILL)
    for child in family:
        try:
            child.kill()
        except psutil.Error:
            continue
    server.process.wait()
    _, alive = psutil.wait_procs(family, timeout=15)
    assert not alive, f"still running after SIGKILL: {alive}"


def _kill_during(server: RunningServer, platform: Platform, kind: str, round_: int) -> None:
    _csv(platform, round_)
    delay = platform.rng.uniform(0, platform.durations[kind])
    platform.say(f"round {round_}: {kind}, SIGKILL after {delay:.3f}s")
    outcome: list[str] = []

    def work() -> None:
        try:
            with Client(server.url, timeout=30) as client:
                WORK[kind](client, platform, round_)
            outcome.append("finished before the kill")
        except Exception as exc:  # the platform died under it: what a killed client sees
            outcome.append(f"cut off: {type(exc).__name__}")

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    time.sleep(delay)
    _kill(server)
    thread.join(timeout=60)
    assert not thread.is_alive(), "the client never noticed the platform died"
    platform.say(f"  {kind} {outcome[0]}")


def _measure(server: RunningServer, platform: Platform) -> None:
    """Each kind of work once, unkilled: the durations the kill points are drawn over (and a
    table, a model version, a deployment and a finished pipeline run to start from)."""
    with Client(server.url, timeout=30) as client:
        client.pipelines.apply(PIPELINE)
        _csv(platform, 0)
        for kind in KINDS:
            started = time.monotonic()
            WORK[kind](client, platform, 0)
            platform.durations[kind] = time.monotonic() - started
    platform.say("measured: " + ", ".join(f"{k} {s:.2f}s" for k, s in platform.durations.items()))


def _check_tables(store: MetadataStore, client: Client, home: Path) -> None:
    """Invariant 1: the catalog's version of each table is a commit in its Delta log, the
    table reads at it and at the log's newest, and every ingest is all there or absent."""
    with store.session() as session:
        tables = session.execute(select(LakeTableRow)).scalars().all()
        found = [(t.project_id, t.id, t.name, t.version) for t in tables]
    for project_id, table_id, name, version in found:
        folder = home / "artifacts" / layout.lake_table_prefix(project_id, table_id)
        if version < 0:
            continue
        assert (folder / "_delta_log" / f"{version:020d}.json").exists(), (name, version)
        DeltaTable(folder, version=version).to_pyarrow_table()
        newest = DeltaTable(folder)
        rows = newest.to_pyarrow_table()
        if name == TABLE:  # (the others: the prediction log's)
            counts = rows.group_by("round").aggregate([("i", "count")]).to_pylist()
            torn = {c["round"]: c["i_count"] for c in counts if c["i_count"] != ROWS}
            assert not torn, f"{name}: rounds with a torn ingest (round: rows): {torn}"
        listed = client.tables.get("default", name)
        assert (listed.version, listed.row_count) == (newest.version(), rows.num_rows), name


def _check_artifacts(store: MetadataStore, home: Path) -> int:
    """Invariant 2: every READY version's package and every logged model's package is
    there, file by file, with the hashes its manifest names (the registry's own check)."""
    artifacts = LocalArtifactStore(home / "artifacts")
    with store.session() as session:
        logged = session.execute(
            select(LoggedModelRow, RunRow.project_id).join(
                RunRow, RunRow.id == LoggedModelRow.run_id
            )
        ).all()
        packages = {
            m.id: (f"{layout.run_artifacts_prefix(project, m.run_id)}/{m.path}", m.manifest_sha256)
            for m, project in logged
        }
        ready = session.execute(
            select(ModelVersionRow.logged_model_id, ModelVersionRow.manifest_sha256).where(
                ModelVersionRow.status == "READY"
            )
        ).all()
    for model_id, sha in ready:
        assert model_id in packages, f"a READY version names logged model {model_id}, absent"
        assert packages[model_id][1] == sha
    for prefix, sha in packages.values():
        verify_package(artifacts, prefix, sha)
    # A registration the kill cut off is left PENDING (never served, its package unverified)
    # until the housekeeping verifies it again two minutes later (settle_stale_registrations,
    # tested in tests/unit/registry/test_aliases.py): counted, for the log.
    with store.session() as session:
        return len(
            session.execute(select(ModelVersionRow.id).where(ModelVersionRow.status == "PENDING"))
            .scalars()
            .all()
        )


def _check_training_runs(store: MetadataStore) -> None:
    """A training run the kill cut off (its client gone with the platform) is marked LOST
    once its heartbeat times out, never left RUNNING."""

    def running() -> list[str]:
        with store.session() as session:
            found = session.execute(select(RunRow.id).where(RunRow.status == "RUNNING"))
            return list(found.scalars().all())

    eventually(
        lambda: not running(),
        SETTLE_S,
        "no training run left RUNNING",
        interval_s=0.3,
        describe=lambda: f"still RUNNING: {running()}",
    )


def _check_deployments(client: Client, home: Path) -> None:
    """Invariant 3: each deployment settles (ready and answering, or failed with a reason),
    and no package folder outlives its deployment (a delete cut off before its clean-up)."""
    stored = {f"default/{d.name}" for d in client.deployments.iter()}
    folders = {f"{p.parent.name}/{p.name}" for p in (home / "deployments").glob("*/*")}
    assert folders <= stored, f"package folders of no deployment: {folders - stored}"
    for deployment in list(client.deployments.iter()):
        found = eventually(
            lambda name=deployment.name: _settled(client, name),
            SETTLE_S,
            f"deployment {deployment.name} to settle",
            interval_s=0.3,
        )
        if found.status == DeploymentStatus.FAILED:
            assert found.status_message, found
        elif found.status == DeploymentStatus.READY:
            answer = client.deployments.predict(deployment.name, instances(3))
            assert len(answer["predictions"]) == 3, answer


def _settled(client: Client, name: str) -> Any:
    """The deployment once ready or failed, a true value once deleted, else None."""
    try:
        found = client.deployments.get(name)
    except NotFoundError:  # a delete the kill interrupted finished on restart
        return "deleted"
    settled = (DeploymentStatus.FAILED, DeploymentStatus.READY)
    return found if found.status in settled else None


def _check_runs(client: Client) -> None:
    """Invariant 4: every pipeline run reaches its end; a failed one says why."""
    for run in client.pipelines.runs(limit=100).items:
        ended = _wait_run(client, run.id)
        assert ended.status in ("SUCCEEDED", "FAILED"), ended
        if ended.status == "FAILED":
            assert ended.error, ended


def _check(server: RunningServer, platform: Platform) -> None:
    started = time.monotonic()
    store = MetadataStore(f"sqlite:///{platform.home / 'loopml.db'}")
    try:
        with Client(server.url, timeout=30) as client:
            _check_tables(store, client, platform.home)
            pending = _check_artifacts(store, platform.home)
            _check_training_runs(store)
            _check_deployments(client, platform.home)
            _check_runs(client)
    finally:
        store.dispose()
    took = time.monotonic() - started
    platform.say(f"  invariants hold ({took:.1f}s after ready; {pending} versions PENDING)")


def test_sigkill_at_random_points_leaves_every_store_consistent(tmp_path: Path) -> None:
    seed = int(os.environ.get("LOOPML_TEST_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    code = tmp_path / "code"
    code.mkdir()
    (code / "crash_steps.py").write_text(textwrap.dedent(STEPS))
    pythonpath = os.pathsep.join(p for p in (str(code), os.environ.get("PYTHONPATH", "")) if p)
    (tmp_path / "home").mkdir()
    platform = Platform(
        home=tmp_path / "home",
        package=package_files(tmp_path / "package"),
        rng=random.Random(seed),
        env={**SETTINGS, "PYTHONPATH": pythonpath},
    )
    platform.say(f"seed {seed}: LOOPML_TEST_CRASH_SEED={seed} replays these kill points")
    kinds = [KINDS[i % len(KINDS)] for i in range(ROUNDS)]
    platform.rng.shuffle(kinds)
    with _up(platform, 0) as server:
        _measure(server, platform)
        _kill(server)
    for round_, kind in enumerate(kinds, 1):
        with _up(platform, round_) as server:
            _check(server, platform)
            _kill_during(server, platform, kind, round_)
    with _up(platform, ROUNDS + 1) as server:
        _check(server, platform)
