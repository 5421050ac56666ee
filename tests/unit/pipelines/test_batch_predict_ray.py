"""The ``batch_predict`` step with ``on: ray`` (issue 37), wired as separate hosts would be:
the metadata in PostgreSQL, the lake and artifacts on S3 (moto's server), a worker whose
executor is the Ray cluster. The step runs as a Ray task, its scoring actors read the
table's Delta files from S3 on the cluster, and the output equals ``score_table``'s local
output row for row, with the same lineage. A scoring actor that cannot get a CPU fails the
scoring with the reason, where it used to wait forever."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from loopml.core.executors import RayExecutorConfig
from loopml.core.pipelines import RunStatus
from loopml.data import lake
from loopml.pipelines import service
from loopml.scoring.batch import score_table
from loopml.settings import Settings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from tests.conftest import free_port, missing_service
from tests.e2e.test_predict_ray import _scoring_actors
from tests.ray_cluster import RAY, RayCluster
from tests.unit.deploy.deploy_support import cancer_frame, fit, register_model
from tests.unit.scoring.test_batch_ray import _lineage, _scored

from .conftest import cluster_settings, step_of, wait_run
from .test_ray_worker import ray_worker, run_spec

pytestmark = pytest.mark.ray

FILES = 3
SPEC = """\
name: score-on-ray
steps:
  - name: score
    uses: batch_predict
    with: {input: patients, output: ray_out, model: cancer/1, on: ray, chunk_rows: 50}
"""


@pytest.fixture
def cluster() -> Iterator[RayCluster]:
    """A cluster of this test's own: a head (1 CPU, which the step's task holds) and a
    second node (1 CPU) for the scoring actor. Not the shared ``ray_cluster``: other tests'
    scoring actors spread over every node with a free CPU, and would die with this node."""
    if not RAY.is_file():
        missing_service(f"Ray ({RAY} missing: pip install 'loopml[ray]')")
    started = RayCluster.start(free_port())
    try:
        started.add_node("scorer")
        yield started
    finally:
        started.stop()


@pytest.fixture
def settings(
    tmp_path: Path, postgres_url: str, s3_bucket: str, s3_endpoint: str, cluster: RayCluster
) -> Settings:
    """PostgreSQL and S3, as every host of a cluster reaches them; the worker's executor is
    the cluster, which is also where the step's ``on: ray`` scores."""
    made = cluster_settings(tmp_path / "home", postgres_url, s3_bucket, s3_endpoint)
    executor = RayExecutorConfig(type="ray", address=cluster.address, stop_grace_s=1.0)
    return made.model_copy(update={"worker": made.worker.model_copy(update={"executor": executor})})


def test_the_step_scores_on_ray_from_s3_as_the_local_path_does(
    cluster: RayCluster,
    settings: Settings,
    store: MetadataStore,
    artifacts: ArtifactStore,
    usercode: Callable[[str, str], Path],
    tmp_path: Path,
) -> None:
    assert type(artifacts).__name__ == "S3ArtifactStore"
    register_model(settings, store, artifacts, fit(1.0))
    rows = pa.Table.from_pandas(cancer_frame()[0], preserve_index=False)
    step = -(-rows.num_rows // FILES)
    for start in range(0, rows.num_rows, step):  # one Delta file per append
        lake.ingest_arrow(
            store, artifacts, "default", "patients", rows.slice(start, step), actor="t"
        )
    local = score_table(
        store,
        artifacts,
        "default",
        input="patients",
        output="local_out",
        workdir=tmp_path / "work",
        actor="t",
        model="cancer/1",
    )
    actors = _scoring_actors(cluster)

    # The step's own task holds the head's one CPU while it runs: the scoring actor needs
    # another, on the second node (a second host, in a real cluster).
    import ray

    if ray.is_initialized():  # an earlier test's, in this process, to the shared cluster
        ray.shutdown()
    try:
        with ray_worker(store, artifacts, settings, cluster) as worker:
            assert worker.executor.name == "ray"
            run = wait_run(store, run_spec(store, SPEC), timeout_s=180)
    finally:
        ray.shutdown()

    scored = step_of(run, "score")
    assert run.status == RunStatus.SUCCEEDED, scored.error
    assert scored.outputs is not None
    assert scored.outputs["rows"] == local.rows == rows.num_rows
    # The step ran as a Ray task (its log's first line names the node), and its scoring
    # actors ran on the cluster too.
    _, text = service.read_log(store, artifacts, "default", run.id, "score")
    assert text.splitlines()[0].decode().startswith("[loopml] step 'score' runs on Ray node ")
    assert _scoring_actors(cluster) > actors, "no scoring actor ran on the Ray cluster"
    expected = _scored(store, artifacts, "local_out")
    got = _scored(store, artifacts, "ray_out")
    assert got.schema == expected.schema
    for name in [*rows.column_names, "prediction", "probabilities", "model", "model_version"]:
        assert got.column(name).to_pylist() == expected.column(name).to_pylist(), name
    # The step pinned the table's version when the run started (3 appends: version 2).
    local_lineage = _lineage(store, artifacts, "local_out")
    assert _lineage(store, artifacts, "ray_out") == {**local_lineage, "input": "patients@2"}


def test_a_scoring_actor_that_never_gets_a_cpu_fails_with_the_reason(
    ray_cluster: RayCluster,
) -> None:
    import ray

    from loopml.core.errors import ServiceUnavailableError
    from loopml.scoring import ray_batch

    ray.init(address=ray_cluster.address, ignore_reinit_error=True)
    try:
        # A resource no node has: the actor stays pending, as one does while every CPU of
        # the cluster is held (a step on the Ray executor holding the one it needs).
        never = ray.remote(num_cpus=0, resources={"nowhere": 1})(_Idle).remote()  # type: ignore[attr-defined]
        with pytest.raises(ServiceUnavailableError, match="no scoring actor could start") as raised:
            ray_batch._started(ray, [never], 1, 1.0)
        assert raised.value.details == {"reason": "ray_no_free_cpu", "cluster_cpus": 1}
        assert "Add a node with CPUs, or score without on: ray" in raised.value.message
    finally:
        ray.shutdown()


class _Idle:
    def ping(self) -> None:
        pass
