"""XGBoost's default scored before the search, next to LightGBM's, when xgboost is
installed: on the same folds, counted by ``max_iter``, and packaged like any winner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from loopml.packaging import load_model, package_model
from loopml.train.automl import run_automl
from loopml.train.automl._costs import size_mb, tree_nodes
from loopml.train.automl._defaults import DEFAULTS, XGBOOST, default_learners
from loopml.train.automl._flaml import MEASURED_NODES

xgboost = pytest.importorskip("xgboost")


def cancer() -> pd.DataFrame:
    frame: pd.DataFrame = datasets.load_breast_cancer(as_frame=True).frame
    return frame


def test_the_xgboost_default_follows_lightgbms_on_the_same_folds(tmp_path: Path) -> None:
    frame = cancer()

    result = run_automl(
        frame, "target", task="classification", budget_s=60, max_iter=2, seed=1, n_jobs=1
    )

    assert [(t.estimator, t.source) for t in result.trials] == [
        ("lgbm", "default"),
        (XGBOOST, "default"),
    ]
    second = result.trials[1]
    # XGBoost's defaults, and the tree nodes its fold models had, for the size estimates.
    assert {k: v for k, v in second.config.items() if k != MEASURED_NODES} == DEFAULTS[XGBOOST]
    nodes = second.config[MEASURED_NODES]
    assert 0 < nodes < tree_nodes(XGBOOST, DEFAULTS[XGBOOST], len(frame), 2)
    assert second.size_mb < size_mb(XGBOOST, DEFAULTS[XGBOOST], len(frame), 2, 30)
    # The same score by hand: XGBoost's library defaults on the seeded folds.
    x = frame.drop(columns="target").to_numpy()
    y = frame["target"].to_numpy()
    folds = StratifiedKFold(5, shuffle=True, random_state=1).split(x, y)
    model = xgboost.XGBClassifier(n_jobs=1, random_state=10242048)
    scores = [
        roc_auc_score(y[val], model.fit(x[fit], y[fit]).predict_proba(x[val])[:, 1])
        for fit, val in folds
    ]
    assert second.score == pytest.approx(float(np.mean(scores)), abs=1e-9)
    # It wins here, and its pipeline packages as ONNX that reproduces it.
    assert result.best_estimator == XGBOOST
    sample = frame.drop(columns="target")
    package = package_model(result.model, tmp_path / "pkg", sample=sample)
    assert package.manifest.primary == "onnx", package.manifest.onnx_error
    loaded = load_model(package.path)
    np.testing.assert_allclose(
        loaded.predict_proba(sample), result.model.predict_proba(sample), atol=1e-4
    )


def test_max_iter_counts_both_defaults() -> None:
    frame = cancer()

    one = run_automl(frame, "target", task="classification", budget_s=60, max_iter=1, n_jobs=1)
    three = run_automl(frame, "target", task="classification", budget_s=60, max_iter=3, n_jobs=1)

    assert [(t.estimator, t.source) for t in one.trials] == [("lgbm", "default")]
    assert [(t.estimator, t.source) for t in three.trials][:2] == [
        ("lgbm", "default"),
        (XGBOOST, "default"),
    ]
    # The final ensemble is tried after the capped trials, as with LightGBM's default alone.
    assert [t.source for t in three.trials[2:] if t.source != "ensemble"] == ["search"]


def test_the_xgboost_default_waits_for_a_budget_with_room_for_it() -> None:
    # 5-fold LightGBM on 569 rows takes longer than this budget leaves after its reserve.
    result = run_automl(cancer(), "target", task="classification", budget_s=0.4, n_jobs=1)

    assert [t.estimator for t in result.trials if t.source == "default"] == ["lgbm"]


def test_a_regression_scores_the_xgboost_default() -> None:
    frame = datasets.load_diabetes(as_frame=True).frame

    result = run_automl(frame, "target", task="regression", budget_s=60, max_iter=2, n_jobs=1)

    assert [t.estimator for t in result.trials][:2] == ["lgbm", XGBOOST]
    assert result.trials[1].size_mb > 0


def test_labels_xgboost_cannot_take_or_named_learners_leave_it_out() -> None:
    frame = cancer()
    frame["target"] = np.where(frame["target"] == 1, "benign", "malignant")

    strings = run_automl(frame, "target", task="classification", budget_s=60, max_iter=2)
    named = run_automl(
        cancer(), "target", task="classification", budget_s=60, max_iter=2, estimators=["lgbm"]
    )

    assert [t.source for t in strings.trials][:2] == ["default", "search"]
    assert strings.model.predict(frame.drop(columns="target").iloc[:3]).dtype.kind in "OU"
    assert [t.source for t in named.trials][:2] == ["default", "search"]
    codes = np.arange(3)
    assert default_learners(["lgbm"], all_learners=True, classes=codes) == ["lgbm", XGBOOST]
    assert default_learners(["lgbm"], all_learners=True, classes=codes + 1) == ["lgbm"]
    assert default_learners(["rf"], all_learners=True, classes=None) == [XGBOOST]
    assert default_learners(["lgbm"], all_learners=False, classes=None) == ["lgbm"]


def test_the_xgboost_size_bound_counts_depth_classes_and_rows() -> None:
    config = DEFAULTS[XGBOOST]

    assert tree_nodes(XGBOOST, config, 100_000, 2) == 100 * (2 * 64 - 1)
    assert tree_nodes(XGBOOST, config, 100_000, 5) == 5 * 100 * (2 * 64 - 1)
    assert tree_nodes(XGBOOST, config, 20, 0) == 100 * (2 * 20 - 1)
    assert tree_nodes(XGBOOST, config | {MEASURED_NODES: 7372}, 100_000, 10) == 7372
