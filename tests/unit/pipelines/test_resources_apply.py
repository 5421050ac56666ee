"""`pipelines apply` against the nodes the workers reported (a real store on SQLite and
PostgreSQL, the report written by a real worker), and the local worker counting the steps'
CPUs: two steps that each ask for all of them run one after the other, two that fit run
together."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from loopml.core.clock import utcnow
from loopml.core.errors import ValidationError
from loopml.core.executors import LocalExecutorConfig
from loopml.core.pipelines import RunStatus
from loopml.core.step_resources import NodeShape
from loopml.pipelines import service
from loopml.pipelines.backends.local import LocalExecutor
from loopml.pipelines.worker import Worker, WorkerConfig
from loopml.settings import Settings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from loopml.store import pipeline_workers as workers_repo
from loopml.wiring import open_artifact_store

from .conftest import FAST, running_worker, step_of, wait_run


def spec(resources: str, name: str = "train") -> str:
    return textwrap.dedent(
        f"""\
        name: asks
        steps:
          - name: {name}
            python: "m:f"
            resources: {resources}
        """
    )


def report_as_a_worker(store: MetadataStore, settings: Settings, cpus: float) -> Worker:
    """A worker on this machine told it has ``cpus``, after its report (as at its start)."""
    executor = LocalExecutor(LocalExecutorConfig(cpus=cpus))
    worker = Worker(store, open_artifact_store(settings), settings, executor=executor)
    worker.report()
    return worker


def test_no_worker_seen_lately_accepts_with_a_warning(
    any_store: MetadataStore, settings: Settings
) -> None:
    applied = service.apply_spec(any_store, "default", spec("{gpus: 4}"), actor="t")
    assert applied.created
    [warning] = applied.warnings
    assert "no pipeline worker reported its nodes in the last 10 minutes" in warning
    assert "'train'" in warning
    # A report older than the window is no evidence of the cluster now.
    with any_store.session() as session:
        workers_repo.report(
            session,
            "gone:1",
            "local",
            [NodeShape(cpus=64, memory=1 << 40, gpus=8)],
            now=utcnow() - timedelta(minutes=11),
        )
    assert service.apply_spec(any_store, "default", spec("{gpus: 5}"), actor="t").warnings


def test_a_shape_no_node_has_is_refused_naming_the_largest_node(
    any_store: MetadataStore, settings: Settings
) -> None:
    report_as_a_worker(any_store, settings, cpus=2)
    with any_store.session() as session:
        workers_repo.report(session, "small:1", "local", [NodeShape(cpus=1, memory=1 << 30)])
    with pytest.raises(ValidationError) as caught:
        service.apply_spec(any_store, "default", spec("{cpus: 1, gpus: 4}"), actor="t")
    message = caught.value.message
    assert message.startswith("step 'train' asks for 1 CPU, 4 GPUs; no node can run it: ")
    assert "the largest node of the workers seen in the last 10 minutes has 2 CPUs, " in message
    assert message.count("GiB") == 1
    assert caught.value.details["steps"] == {"train": {"cpus": 1.0, "gpus": 4}}
    assert caught.value.details["largest_node"]["cpus"] == 2
    with pytest.raises(ValidationError, match="asks for 3 CPUs"):
        service.apply_spec(any_store, "default", spec("{cpus: 3}"), actor="t")
    with pytest.raises(ValidationError, match="asks for 1024 TiB"):
        service.apply_spec(any_store, "default", spec("{memory: 1PiB}"), actor="t")
    fits = service.apply_spec(any_store, "default", spec("{cpus: 2, memory: 512MiB}"), actor="t")
    assert fits.created
    assert fits.warnings == []


def test_a_step_fits_when_one_node_has_all_it_asks(
    any_store: MetadataStore, settings: Settings
) -> None:
    # CPUs on one node and GPUs on another do not make a node with both.
    with any_store.session() as session:
        workers_repo.report(
            session,
            "ray:1",
            "ray",
            [NodeShape(cpus=32, memory=1 << 36, gpus=0), NodeShape(cpus=4, memory=1 << 34, gpus=1)],
        )
    with pytest.raises(ValidationError, match="has 4 CPUs, 16 GiB, 1 GPU"):
        service.apply_spec(any_store, "default", spec("{cpus: 8, gpus: 1}"), actor="t")
    assert service.apply_spec(any_store, "default", spec("{cpus: 4, gpus: 1}"), actor="t").created


STEPS = """
import time
from loopml.pipelines import step

@step
def nap(ctx, seconds):
    time.sleep(seconds)
    return {"slept": seconds}
"""

TWO = """\
name: two
steps:
  - {{name: left, python: "res_steps:nap", with: {{seconds: 1.5}}, resources: {{cpus: {cpus}}}}}
  - {{name: right, python: "res_steps:nap", with: {{seconds: 1.5}}, resources: {{cpus: {cpus}}}}}
"""


@pytest.mark.parametrize(("cpus", "together"), [(2, False), (1, True)])
def test_the_local_worker_runs_steps_only_while_their_cpus_are_free(
    cpus: int,
    together: bool,
    usercode: Callable[[str, str], Path],
    store: MetadataStore,
    artifacts: ArtifactStore,
    settings: Settings,
) -> None:
    usercode("res_steps", STEPS)
    config = WorkerConfig(**{**FAST.model_dump(), "executor": {"type": "local", "cpus": 2}})
    applied = service.apply_spec(store, "default", TWO.format(cpus=cpus), actor="t")
    run_id = service.start_run(store, "default", applied.pipeline.name, {}, actor="t").id
    with running_worker(store, artifacts, settings, config):
        run = wait_run(store, run_id)
    assert run.status == RunStatus.SUCCEEDED
    left, right = step_of(run, "left"), step_of(run, "right")
    assert left.started_at is not None
    assert right.started_at is not None
    assert left.finished_at is not None
    assert right.finished_at is not None
    overlapped = left.started_at < right.finished_at and right.started_at < left.finished_at
    assert overlapped is together


def test_the_worker_reports_this_machine(store: MetadataStore, settings: Settings) -> None:
    worker = report_as_a_worker(store, settings, cpus=3)
    with store.session() as session:
        [node] = workers_repo.nodes_seen(session, utcnow() - timedelta(minutes=1))
    assert node.cpus == 3
    assert node.memory > 0
    assert worker.free_cpus() == 3


def test_without_cpus_given_the_configured_concurrency_still_runs(
    store: MetadataStore, settings: Settings
) -> None:
    """Steps that ask for nothing count one CPU each; a worker whose `concurrency` is above
    the CPU count keeps running that many of them (the operator chose to overcommit), while
    an explicit `cpus` is the exact limit."""
    machines = float(os.cpu_count() or 1)
    wide = WorkerConfig(**{**FAST.model_dump(), "concurrency": int(machines) + 6})
    artifacts = open_artifact_store(settings)
    worker = Worker(store, artifacts, settings, wide, executor=LocalExecutor())
    assert worker.free_cpus() == machines + 6
    exact = LocalExecutor(LocalExecutorConfig(cpus=1))
    assert Worker(store, artifacts, settings, wide, executor=exact).free_cpus() == 1
