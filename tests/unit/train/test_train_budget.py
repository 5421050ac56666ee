"""``loopml.train_model`` with AutoML keeps its whole call (reading the split, search,
refit, packaging, registration and evaluation) within the budget, reports the package's
size and the columns it used, and leaves an identifier column out unless told to keep it."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.datasets import load_breast_cancer

from loopml.core.datasets import SplitSpec
from loopml.data import datasets, lake
from loopml.sdk.training import TrainOutcome, train_model
from loopml.settings import Settings
from loopml.train import tracking
from loopml.train.budget import PHASES
from loopml.wiring import open_artifact_store, open_metadata_store

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
FEATURES = [f"f{i}" for i in range(6)]


@pytest.fixture
def settings() -> Settings:
    data = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, 7, 20, 27, 30]]
    frame = pd.DataFrame(data.to_numpy(), columns=[*FEATURES, "y"])
    frame["y"] = frame["y"].astype(np.int64)
    frame.insert(0, "patient_id", np.arange(10_000, 10_000 + len(frame)))
    settings = Settings()
    store = open_metadata_store(settings)
    store.upgrade()
    artifacts = open_artifact_store(settings)
    lake.ingest_arrow(store, artifacts, "default", "cancer", pa.Table.from_pandas(frame), actor="t")
    split = SplitSpec(eval_fraction=0.25, seed=7, stratify="y")
    datasets.create_version(
        store, artifacts, "default", "cancer_snap", "cancer", split=split, actor="t"
    )
    store.dispose()
    return settings


def _train(settings: Settings, budget: float, **options: Any) -> TrainOutcome:
    """AutoML on the cancer snapshot's ``y``, as ``loopml train`` runs it."""
    return train_model(
        "cancer_snap",
        target="y",
        task="classification",
        budget_s=budget,
        settings=settings,
        **options,
    )


def test_the_whole_training_call_keeps_its_budget(settings: Settings) -> None:
    budget = 20.0

    outcome = _train(settings, budget, register_as="cancer")

    # The bound is 0.9-1.1 x the budget, and bench/automl_budget.py measures it: a
    # claim of speed, which a test on a shared 2-core machine cannot hold (at load 10 the
    # registry's scoring alone took 5.2 s against the 4 s kept for it, and a fresh worker's
    # first trial came at 12 s of 20). Here the thing itself: the search used its budget
    # (a load only makes the call longer) and stopped on it, and the accounting is exact:
    # the recorded phases sum to the call's wall time.
    report = (outcome.model_format, outcome.details.get("budget"), outcome.trials)
    assert outcome.elapsed_s >= 0.75 * budget, report
    spend = outcome.details["budget"]
    assert sum(spend[p] for p in PHASES if p in spend) == pytest.approx(spend["wall"], abs=0.01)
    assert spend["wall"] == pytest.approx(outcome.elapsed_s, abs=0.1)
    assert spend["unused"] == pytest.approx(max(0.0, budget - spend["wall"]), abs=0.01)
    assert spend["stopped"] == "budget"
    assert {"read", "search", "final_fit", "package", "register"} <= set(spend)
    assert outcome.version is not None
    assert outcome.evaluation is not None
    assert outcome.evaluation.metrics["roc_auc"] > 0.9
    assert outcome.used_columns == FEATURES
    assert outcome.excluded_columns["patient_id"].startswith("identifier-like: unique per row")
    assert outcome.package_mb is not None
    assert 0 < outcome.package_mb <= outcome.details["estimated_mb"] * 1.05
    store = open_metadata_store(settings)
    run = tracking.get_run(store, "default", outcome.run_id)
    store.dispose()
    assert run.params is not None
    assert run.params["used_columns"] == ",".join(FEATURES)
    assert run.params["excluded_columns"] == "patient_id"
    assert run.params["stopped"] == "budget"
    # Where the budget went, on the run (``loopml runs show`` lists it).
    assert run.metrics is not None
    assert run.tags is not None
    assert run.metrics["budget.wall_s"] == pytest.approx(spend["wall"], abs=0.01)
    assert {f"budget.{p}_s" for p in spend if p in PHASES} <= set(run.metrics)
    assert "budget.unused_s" in run.metrics
    assert run.tags["loopml.budget.stopped"] == "budget"


def test_a_kept_identifier_is_used_and_the_size_limit_holds(settings: Settings) -> None:
    outcome = _train(
        settings, 60, max_iter=4, keep_columns=["patient_id"], max_model_mb=0.2, n_jobs=1
    )

    assert outcome.used_columns == ["patient_id", *FEATURES]
    assert outcome.excluded_columns == {}
    assert outcome.package_mb is not None
    assert outcome.package_mb <= 0.2
    assert outcome.details["n_jobs"] == 1


def test_a_small_budget_is_used_not_kept_back_for_a_small_model(settings: Settings) -> None:
    # 20 s, not 15: about 1.5 s is still kept back for a small model's registration and
    # packaging, and the search stops a trial's length early or late, so at 15 s the call
    # ended at 0.899 x its budget in one CI run (0.90-0.93 otherwise).
    budget = 20.0

    outcome = _train(settings, budget, register_as="cancer", n_jobs=1)

    # A fixed 3 s kept for registration and 1 s for packaging ended this call at about
    # 0.75 x its budget: a model this small takes 0.5-1 s for both together (about 1 s
    # is still kept back for them, so a budget much smaller ends below 0.9). Load only
    # makes the work after the search longer, so this lower bound holds on a busy machine;
    # the upper one does not (at load 10 packaging alone took 4.9 s here), see above.
    spend = outcome.details["budget"]
    assert spend["stopped"] == "budget"
    assert outcome.elapsed_s >= 0.9 * budget, str(spend)


def test_a_capped_search_ends_early_and_the_run_says_why(settings: Settings) -> None:
    budget = 30.0

    outcome = _train(settings, budget, max_iter=2, n_jobs=1)

    spend = outcome.details["budget"]
    # The cap, not the clock, ended the search: the run says so, it ran the capped number
    # of trials, and budget was left.
    assert spend["stopped"] == "max_iter", spend
    assert outcome.trials <= 2 + 1, (outcome.trials, spend)  # the cap, and the default's
    assert spend["unused"] > 0, spend
    store = open_metadata_store(settings)
    run = tracking.get_run(store, "default", outcome.run_id)
    store.dispose()
    assert run.params is not None
    assert run.tags is not None
    assert run.metrics is not None
    assert run.metrics["budget.budget_s"] == budget
    assert run.params["stopped"] == "max_iter"
    assert run.tags["loopml.budget.stopped"] == "max_iter"
    assert run.metrics["budget.used"] == pytest.approx(spend["used"], abs=0.001)
    assert run.metrics["budget.wall_s"] == pytest.approx(spend["wall"], abs=0.001), spend
