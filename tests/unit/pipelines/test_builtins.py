"""The loop over the real built-ins on small data in the embedded store: validate, snapshot
with a split, AutoML, register, evaluate, gate, promote; then the cache, and a promotion the
gate refuses."""

from __future__ import annotations

import os
import re

import pandas as pd
import pyarrow as pa
import pytest
from sklearn.datasets import load_breast_cancer

from loopml.core.gate import GatePolicy
from loopml.core.pipelines import RunStatus, StepStatus
from loopml.data import lake
from loopml.pipelines import service
from loopml.pipelines.catalog import BUILTINS
from loopml.pipelines.types import ValueType, check_value
from loopml.registry import gate, resolve
from loopml.settings import Settings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore

from .conftest import running_worker, step_of, wait_run

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

LOOP = """\
name: cancer-loop
description: From a table to a promoted champion.
inputs:
  table: {type: table, default: cancer}
  budget: {type: number, default: 3}
outputs:
  model: ${{ steps.promote.outputs.model }}
  auc: ${{ steps.evaluate.outputs.metrics }}
steps:
  - name: promote
    uses: promote
    with: {model: "${{ steps.gate.outputs.model }}"}
    retries: {count: 2, backoff: 0.1}
  - name: gate
    uses: gate
    with: {model: "${{ steps.evaluate.outputs.model }}"}
  - name: evaluate
    uses: evaluate
    with: {model: "${{ steps.register.outputs.model }}"}
  - name: register
    uses: register
    with: {run: "${{ steps.train.outputs.run }}", model: cancer}
  - name: train
    uses: train_automl
    with:
      dataset: ${{ steps.snapshot.outputs.dataset }}
      target: y
      task: classification
      budget_s: ${{ inputs.budget }}
      max_iter: 6
      estimators: [lgbm, rf]
  - name: snapshot
    uses: snapshot
    with:
      dataset: cancer_snap
      from: ${{ steps.validate.outputs.table }}
      split: {eval_fraction: 0.25, seed: 7, stratify: y}
  - name: validate
    uses: validate
    with:
      table: ${{ inputs.table }}
      contract: {columns: {y: {not_null: true, allowed: [0, 1]}}}
"""
CACHED = ["validate", "snapshot", "train", "register", "evaluate"]


def _cancer() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.iloc[:, [0, 1, 2, 3, 7, 20, 21, 22, 27, 30]].copy()
    frame.columns = [f"f{i}" for i in range(9)] + ["y"]
    return frame


@pytest.fixture
def loaded(store: MetadataStore, artifacts: ArtifactStore) -> MetadataStore:
    table = pa.Table.from_pandas(_cancer(), preserve_index=False)
    lake.ingest_arrow(store, artifacts, "default", "cancer", table, actor="t")
    return store


def test_the_loop_then_the_cache_then_a_refused_promotion(
    loaded: MetadataStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    store = loaded
    service.apply_spec(store, "default", LOOP, actor="t")
    with running_worker(store, artifacts, settings):
        first = wait_run(
            store, service.start_run(store, "default", "cancer-loop", actor="t").id, timeout_s=240
        )
        assert first.status == RunStatus.SUCCEEDED, first.error
        assert all(s.status == StepStatus.SUCCEEDED for s in first.steps or [])
        assert first.outputs is not None
        assert first.outputs["model"] == "cancer/1"
        assert first.outputs["auc"]["roc_auc"] > 0.9
        assert step_of(first, "validate").inputs == {
            "table": "cancer@0",
            "contract": {"columns": {"y": {"not_null": True, "allowed": [0, 1]}}},
            "fail": True,
        }
        assert step_of(first, "snapshot").outputs == {
            "dataset": "cancer_snap@1",
            "rows": 569,
            "created": True,
        }
        assert resolve(store, "default", "cancer@champion").version == 1

        again = wait_run(
            store, service.start_run(store, "default", "cancer-loop", actor="t").id, timeout_s=120
        )
        assert again.status == RunStatus.SUCCEEDED, again.error
        for name in CACHED:
            step = step_of(again, name)
            assert step.status == StepStatus.CACHED, name
            assert step.cached_from == step_of(first, name).id
            assert step.outputs == step_of(first, name).outputs
        assert step_of(again, "gate").status == StepStatus.SUCCEEDED  # never cached
        assert again.outputs == first.outputs

        gate.set_policy(
            store,
            "default",
            "cancer",
            GatePolicy.model_validate(
                {"thresholds": [{"metric": m, "min": 1.01} for m in ("roc_auc", "accuracy", "f1")]}
            ),
            actor="t",
        )
        refused = wait_run(
            store, service.start_run(store, "default", "cancer-loop", actor="t").id, timeout_s=120
        )
    assert refused.status == RunStatus.FAILED
    judged = step_of(refused, "gate").outputs
    assert (judged["model"], judged["passed"]) == ("cancer/1", False)
    rule = r"{} = [0-9.]+, required >= 1\.01"
    said = "; ".join(rule.format(m) for m in ("roc_auc", "accuracy", "f1"))
    assert re.fullmatch(said, judged["summary"]), judged
    promote = step_of(refused, "promote")
    assert (promote.status, promote.attempt) == (StepStatus.FAILED, 1)  # not retried
    assert promote.error is not None
    assert promote.error.code == "gate_required"
    assert not promote.error.retryable


def test_the_gate_step_s_summary_may_be_longer_than_a_string_output() -> None:
    """A verdict names every rule that failed: the demo's refusal (a threshold and the
    champion) came to more than a string output's 200 characters, and the step failed
    with "returned bad outputs" once the summary was declared a string."""
    summary = BUILTINS["gate"].outputs["summary"]
    assert check_value(ValueType(summary), "roc_auc = 0.5, required >= 0.9; " * 20) is None
