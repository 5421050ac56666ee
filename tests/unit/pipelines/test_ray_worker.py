"""A real worker whose executor is Ray, against a real local Ray cluster (``ray_cluster``):
steps run as Ray tasks with their outputs and logs recorded as locally, cancelling a run
stops its task's process, and a step whose node dies is retried on another node."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from loopml.core.errors import ValidationError
from loopml.core.executors import RayExecutorConfig
from loopml.core.pipelines import AttemptStatus, RunStatus, StepStatus
from loopml.pipelines import service
from loopml.pipelines.worker import Worker, WorkerConfig, WorkerThread
from loopml.settings import Settings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from tests.ray_cluster import KILL_SLOT, RayCluster
from tests.waiting import eventually

from .conftest import FAST, step_of, wait_run

pytestmark = pytest.mark.ray

STEPS = """
import os, time
from pathlib import Path
from loopml.pipelines import step

@step
def where(ctx, value):
    import psutil

    parent = psutil.Process(os.getppid())
    # Forked from the Ray worker process's fork server (loopml imported already).
    assert parent.cmdline()[1:3] == ["-m", "loopml.pipelines._forkserver"], parent.cmdline()
    parent = parent.parent()
    print(f"doubling {value} in process {os.getpid()}", flush=True)
    return {
        "value": value * 2,
        "pid": os.getpid(),
        "parent": parent.pid,
        "parents": [parent.name(), parent.parent().name()],
    }

@step
def nap(ctx, marker, seconds, first_only=False):
    Path(marker).write_text(str(os.getpid()))
    if not first_only or ctx.attempt == 1:
        time.sleep(seconds)
    return {"attempt": ctx.attempt}
"""


@pytest.fixture
def steps(usercode: Callable[[str, str], Path]) -> Path:
    return usercode("ray_steps", STEPS)


def ray_config(cluster: RayCluster) -> WorkerConfig:
    executor = RayExecutorConfig(type="ray", address=cluster.address, stop_grace_s=1.0)
    return WorkerConfig(**{**FAST.model_dump(), "executor": executor.model_dump()})


@contextmanager
def ray_worker(
    store: MetadataStore, artifacts: ArtifactStore, settings: Settings, cluster: RayCluster
) -> Iterator[Worker]:
    worker = Worker(store, artifacts, settings, ray_config(cluster))
    thread = WorkerThread(worker).start()
    try:
        yield worker
    finally:
        thread.stop()


def run_spec(store: MetadataStore, spec: str) -> str:
    applied = service.apply_spec(store, "default", spec, actor="t")
    return service.start_run(store, "default", applied.pipeline.name, {}, actor="t").id


def wait_for(path: Path, timeout_s: float = 60.0) -> int:
    return int(eventually(lambda: path.exists() and path.read_text(), timeout_s, f"{path}"))


def _ended(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def gone(pid: int, timeout_s: float = 60.0) -> bool:
    return eventually(lambda: _ended(pid), timeout_s, f"process {pid} to end")


def test_steps_run_as_ray_tasks_with_outputs_and_logs(
    ray_cluster: RayCluster,
    steps: Path,
    store: MetadataStore,
    artifacts: ArtifactStore,
    settings: Settings,
) -> None:
    spec = """\
name: on-ray
steps:
  - {name: first, python: "ray_steps:where", with: {value: 2},
     outputs: {value: integer, pid: integer, parent: integer, parents: list}}
  - {name: second, python: "ray_steps:where", with: {value: "${{ steps.first.outputs.value }}"},
     outputs: {value: integer, pid: integer, parent: integer, parents: list}}
"""
    run_id = run_spec(store, spec)
    with ray_worker(store, artifacts, settings, ray_cluster) as worker:
        assert worker.executor.name == "ray"
        run = wait_run(store, run_id, timeout_s=90)
        import ray

        node_ids = {node["NodeID"] for node in ray.nodes()}
    assert run.status == RunStatus.SUCCEEDED
    first, second = step_of(run, "first"), step_of(run, "second")
    assert first.outputs["value"] == 4
    assert second.outputs["value"] == 8
    for done in (first, second):
        # The step's process was started by a Ray worker process (a raylet's child), through
        # that process's fork server, not by this worker.
        parent = done.outputs["parent"]
        ray_worker_name, its_parent = done.outputs["parents"]
        assert ray_worker_name.startswith("ray::")
        assert its_parent == "raylet"
        attempt, text = service.read_log(store, artifacts, "default", run_id, done.name)
        assert attempt.status == AttemptStatus.SUCCEEDED
        header = text.splitlines()[0].decode()
        assert header.startswith(f"[loopml] step {done.name!r} runs on Ray node ")
        assert header.split("runs on Ray node ")[1].split()[0] in node_ids
        assert f"Ray worker process {parent}" in header
        printed = f"doubling {done.outputs['value'] // 2} in process {done.outputs['pid']}"
        assert printed.encode() in text
        assert f"step {done.name} done: ".encode() in text


def test_cancelling_a_run_stops_its_ray_task(
    ray_cluster: RayCluster,
    steps: Path,
    tmp_path: Path,
    store: MetadataStore,
    artifacts: ArtifactStore,
    settings: Settings,
) -> None:
    marker = tmp_path / "pid"
    run_id = run_spec(
        store,
        f"""\
name: cancel-on-ray
steps:
  - {{name: nap, python: "ray_steps:nap", with: {{marker: "{marker}", seconds: 300}}}}
""",
    )
    with ray_worker(store, artifacts, settings, ray_cluster):
        pid = wait_for(marker)
        service.cancel_run(store, "default", run_id, actor="t")
        run = wait_run(store, run_id, timeout_s=30)
        assert gone(pid), "the step's process outlived its cancelled Ray task"
    assert run.status == RunStatus.CANCELLED
    assert step_of(run, "nap").status == StepStatus.CANCELLED


def test_a_step_whose_node_dies_is_retried_on_another_node(
    ray_cluster: RayCluster,
    steps: Path,
    tmp_path: Path,
    store: MetadataStore,
    artifacts: ArtifactStore,
    settings: Settings,
) -> None:
    import ray

    marker = tmp_path / "pid"
    run_id = run_spec(
        store,
        f"""\
name: node-dies
steps:
  - name: nap
    python: ray_steps:nap
    with: {{marker: "{marker}", seconds: 300, first_only: true}}
    outputs: {{attempt: integer}}
    retries: {{count: 1, backoff: 0.2}}
""",
    )
    # This test's tasks ask for no CPU but a KILL_SLOT, which only the head and the victim
    # have (the victim has no CPU): no other test's task runs on the node killed here.
    executor = RayExecutorConfig(
        type="ray", address=ray_cluster.address, num_cpus=0, resources={KILL_SLOT: 1}
    )
    config = WorkerConfig(**{**FAST.model_dump(), "executor": executor.model_dump()})
    worker = Worker(store, artifacts, settings, config)  # connects to the cluster
    head = ray.get_runtime_context().get_node_id()

    class Holder:  # defined here: Ray sends it by value (the nodes cannot import tests)
        def ready(self) -> bool:
            return True

    # The head's slot is held, so the first attempt can only run on the victim.
    holder = ray.remote(num_cpus=0, resources={KILL_SLOT: 1})(Holder).remote()
    ray.get(holder.ready.remote(), timeout=60)
    victim = ray_cluster.add_node("victim", num_cpus=0, resources={KILL_SLOT: 1})
    thread = WorkerThread(worker).start()
    try:
        pid = wait_for(marker)
        victim_id = _victim_id(ray)
        ray_cluster.kill_node(victim)
        ray.kill(holder)
        run = wait_run(store, run_id, timeout_s=90)
        assert gone(pid)
    finally:
        thread.stop()
        ray_cluster.kill_node(victim)
    assert run.status == RunStatus.SUCCEEDED
    nap = step_of(run, "nap")
    assert nap.outputs == {"attempt": 2}
    assert [a.status for a in nap.attempts] == [AttemptStatus.FAILED, AttemptStatus.SUCCEEDED]
    error = nap.attempts[0].error
    assert error is not None
    assert error.type == "StepNodeDied"
    assert error.retryable
    assert victim_id in error.message
    assert "died" in error.message
    _, text = service.read_log(store, artifacts, "default", run_id, "nap", attempt=2)
    assert f"runs on Ray node {head}".encode() in text


def _victim_id(ray: Any) -> str:
    return next(
        node["NodeID"]
        for node in ray.nodes()
        if node["Alive"] and node["Resources"].get(KILL_SLOT) and not node["Resources"].get("CPU")
    )


def test_a_step_asks_the_cluster_for_resources(
    ray_cluster: RayCluster,
    steps: Path,
    store: MetadataStore,
    artifacts: ArtifactStore,
    settings: Settings,
) -> None:
    asks = """\
name: asks
steps:
  - {{name: first, python: "ray_steps:where", with: {{value: 1}}, resources: {resources},
     outputs: {{value: integer, pid: integer, parent: integer, parents: list}}}}
"""
    with ray_worker(store, artifacts, settings, ray_cluster):
        # The worker reports the cluster's nodes when it starts.
        eventually(
            lambda: (
                not service.apply_spec(
                    store, "default", asks.format(resources="{gpus: 0}"), actor="t"
                ).warnings
            ),
            60,
            "the Ray worker to report its nodes (a spec applied without warnings)",
            interval_s=0.1,
        )
        with pytest.raises(ValidationError) as caught:
            service.apply_spec(store, "default", asks.format(resources="{gpus: 64}"), actor="t")
        assert caught.value.message.startswith("step 'first' asks for 64 GPUs; no node can run")
        assert "the largest node of the workers seen in the last 10 minutes has " in (
            caught.value.message
        )
        run_id = run_spec(store, asks.format(resources="{cpus: 1, memory: 64MiB}"))
        run = wait_run(store, run_id, timeout_s=90)
    assert run.status == RunStatus.SUCCEEDED
    assert step_of(run, "first").outputs["value"] == 2
