"""A ``train_text`` fine-tune on the Ray executor whose node dies (issue 37): wired as
separate hosts would be (PostgreSQL metadata, S3 artifacts on moto's server), on a Ray
cluster of its own, the step's retry runs on the other node and resumes from the last
complete checkpoint the dead node left in the artifact store, as a worker's SIGKILL does
locally (tests/e2e/test_pipelines_workers.py)."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.cluster.ray import init_ray
from loopml.core.executors import RayExecutorConfig
from loopml.core.pipelines import AttemptStatus, RunStatus
from loopml.pipelines import service
from loopml.pipelines.worker import WorkerConfig
from loopml.settings import Settings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from loopml.train.tracking.runs import get_run
from tests.conftest import free_port, missing_service
from tests.e2e.test_pipelines_workers import TEXT_OPTIONS
from tests.ray_cluster import KILL_SLOT, RAY, RayCluster
from tests.text_data import ingest_reviews, reviews
from tests.waiting import eventually

from .conftest import FAST, cluster_settings, running_worker, step_of, wait_run
from .test_ray_worker import run_spec

pytestmark = pytest.mark.ray

SPEC = """\
name: finetune-on-ray
steps:
  - name: train
    uses: train_text
    with:
      dataset: reviews_snap
      target: sentiment
      task: text-classification
      params: {options}
    retries: {{count: 2, backoff: 0.2}}
"""
# The local test's tiny fine-tune, for 2 epochs: 120 training rows in batches of 8, 30 steps.
OPTIONS = {**TEXT_OPTIONS, "epochs": 2}
STEPS = 30
_COMPLETE = re.compile(r"/checkpoints/[^/]+/(\d+)/_COMPLETE$")


@pytest.fixture
def cluster() -> Iterator[RayCluster]:
    """A head node of this test's own (1 CPU, one KILL_SLOT): the node killed here runs
    nothing of the other Ray tests, which share ``ray_cluster``."""
    if not RAY.is_file():
        missing_service(f"Ray ({RAY} missing: pip install 'loopml[ray]')")
    started = RayCluster.start(free_port())
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def settings(tmp_path: Path, postgres_url: str, s3_bucket: str, s3_endpoint: str) -> Settings:
    return cluster_settings(tmp_path / "home", postgres_url, s3_bucket, s3_endpoint)


def _checkpoints(artifacts: ArtifactStore) -> list[int]:
    """The steps of the complete fine-tune checkpoints in the artifact store, ascending."""
    found = (_COMPLETE.search(f"/{info.key}") for info in artifacts.list(""))
    return sorted(int(match.group(1)) for match in found if match)


@pytest.mark.timeout(240)  # a cluster, a node, two fine-tunes each importing torch
def test_a_fine_tune_whose_node_dies_resumes_on_another_node_from_its_checkpoint(
    cluster: RayCluster, settings: Settings, store: MetadataStore, artifacts: ArtifactStore
) -> None:
    # Found, not imported: only the step's processes on the nodes fine-tune.
    if not all(importlib.util.find_spec(name) for name in ("torch", "transformers")):
        pytest.skip("the fine-tune needs torch and transformers")
    import ray

    assert type(artifacts).__name__ == "S3ArtifactStore"
    ingest_reviews(settings, "reviews", reviews(160), stratify="sentiment")
    run_id = run_spec(store, SPEC.format(options=json.dumps(OPTIONS)))
    # The step's tasks ask for a KILL_SLOT, of which the head and the victim have one each.
    executor = RayExecutorConfig(
        type="ray", address=cluster.address, num_cpus=0, resources={KILL_SLOT: 1}, stop_grace_s=1
    )
    config = WorkerConfig(**{**FAST.model_dump(), "executor": executor.model_dump()})

    class Holder:  # defined here: Ray sends it by value (the nodes cannot import tests)
        def ready(self) -> bool:
            return True

    if ray.is_initialized():  # an earlier test's, in this process, to the shared cluster
        ray.shutdown()
    init_ray(ray, cluster.address)  # the worker's executor drives through this connection
    try:
        head = ray.get_runtime_context().get_node_id()
        # The head's slot is held, so the first attempt can only run on the victim.
        holder = ray.remote(num_cpus=0, resources={KILL_SLOT: 1})(Holder).remote()
        ray.get(holder.ready.remote(), timeout=60)
        victim = cluster.add_node("victim", num_cpus=1, resources={KILL_SLOT: 1})
        with running_worker(store, artifacts, settings, config):
            eventually(lambda: _checkpoints(artifacts), 120, "a checkpoint", interval_s=0.02)
            victim_id = next(n["NodeID"] for n in ray.nodes() if n["NodeID"] != head)
            cluster.kill_node(victim)  # every process of it: what it wrote is all there is
            left = _checkpoints(artifacts)
            assert left, "the checkpoint was dropped"
            assert left[-1] < STEPS, "the fine-tune finished before its node was killed"
            ray.kill(holder)
            run = wait_run(store, run_id, timeout_s=150)
    finally:
        ray.shutdown()
    train = step_of(run, "train")
    assert run.status == RunStatus.SUCCEEDED, train.error
    assert [a.status for a in train.attempts] == [AttemptStatus.FAILED, AttemptStatus.SUCCEEDED]
    error = train.attempts[0].error
    assert error is not None
    assert error.type == "StepNodeDied"
    assert victim_id in error.message
    _, text = service.read_log(store, artifacts, "default", run_id, "train", attempt=2)
    assert f"runs on Ray node {head}".encode() in text
    assert train.outputs is not None
    assert train.outputs["metrics"].get("resumed_from_step") == left[-1]
    tags = get_run(store, "default", train.outputs["run"]).tags or {}
    assert tags.get("loopml.resumed_from_step") == str(left[-1])
    left_behind = [info.key for info in artifacts.list("") if "/checkpoints/" in info.key]
    assert left_behind == [], "a finished fine-tune leaves no checkpoint behind"
