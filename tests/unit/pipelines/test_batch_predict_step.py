"""The ``batch_predict`` built-in in a real worker: a registered model version scores a lake
table into a table; a re-run with unchanged inputs is cached; a missing input table and a
model reference that names no version fail the step with a message that says so."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from loopml.core.pipelines import RunStatus, StepStatus
from loopml.data import lake
from loopml.pipelines import service
from loopml.settings import Settings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from tests.unit.deploy.deploy_support import cancer_frame, fit, register_model

from .conftest import running_worker, step_of, wait_run

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

SPEC = """\
name: scoring
inputs:
  table: {type: table, default: patients}
  model: {type: model, default: cancer/1}
outputs:
  scored: ${{ steps.score.outputs.table }}
steps:
  - name: score
    uses: batch_predict
    with:
      input: ${{ inputs.table }}
      output: scored
      model: ${{ inputs.model }}
"""
ROWS = 120
ADDED = ["prediction", "probabilities", "inference_id", "model", "model_version"]


@pytest.fixture
def registered(store: MetadataStore, artifacts: ArtifactStore, settings: Settings) -> None:
    """``cancer/1`` (a small logistic regression) and the table ``patients`` to score."""
    register_model(settings, store, artifacts, fit(1.0))
    frame, _ = cancer_frame()
    table = pa.Table.from_pandas(frame.head(ROWS), preserve_index=False)
    lake.ingest_arrow(store, artifacts, "default", "patients", table, actor="t")
    service.apply_spec(store, "default", SPEC, actor="t")


def _start(store: MetadataStore, **inputs: str) -> str:
    return service.start_run(store, "default", "scoring", inputs, actor="t").id


def test_a_version_scores_a_table_then_a_rerun_is_cached(
    store: MetadataStore, artifacts: ArtifactStore, settings: Settings, registered: None
) -> None:
    with running_worker(store, artifacts, settings):
        first = wait_run(store, _start(store), timeout_s=120)
        assert first.status == RunStatus.SUCCEEDED, first.error
        score = step_of(first, "score")
        assert score.outputs == {"table": "scored@0", "rows": ROWS, "model": "cancer/1"}
        assert score.inputs is not None
        assert score.inputs["input"] == "patients@0"
        out = lake.read_dataset(store, artifacts, "default", "scored", 0).to_table()
        assert out.num_rows == ROWS
        assert out.column_names == [f"f{i}" for i in range(8)] + ADDED
        assert set(out.column("prediction").to_pylist()) <= {0, 1}
        assert set(out.column("model_version").to_pylist()) == {1}
        assert all(len(p) == 2 for p in out.column("probabilities").to_pylist())

        again = wait_run(store, _start(store), timeout_s=120)
    assert again.status == RunStatus.SUCCEEDED, again.error
    cached = step_of(again, "score")
    assert cached.status == StepStatus.CACHED
    assert cached.outputs == score.outputs
    # Nothing was written again: the output table still has its one version.
    assert lake.get_table(store, artifacts, "default", "scored").version == 0


def test_a_missing_table_or_an_unknown_version_fails_the_step_clearly(
    store: MetadataStore, artifacts: ArtifactStore, settings: Settings, registered: None
) -> None:
    with running_worker(store, artifacts, settings):
        no_table = wait_run(store, _start(store, table="nobody"), timeout_s=120)
        no_model = wait_run(store, _start(store, model="cancer/7"), timeout_s=120)
    for run, expected in ((no_table, "table 'nobody' not found"), (no_model, "version 7")):
        assert run.status == RunStatus.FAILED
        failed = step_of(run, "score")
        assert failed.status == StepStatus.FAILED
        assert failed.error is not None
        assert expected in failed.error.message
        assert failed.error.code == "not_found", failed.error
        # A missing table or version does not appear on a retry.
        assert not failed.error.retryable
        assert expected in (run.error or "")
