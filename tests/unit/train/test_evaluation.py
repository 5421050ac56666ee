"""Evaluation reports against sklearn.metrics on known data, for in-memory models and for
their loaded packages alike, plus single-row latency and the refusals."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from sklearn import metrics as skm
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from loopml.core.errors import ValidationError
from loopml.core.gate import EvaluationReport, GatePolicy, judge
from loopml.packaging import load_model, package_model
from loopml.train.evaluation import evaluate, predict_latency

EVAL_HASH = "0123456789abcdef" * 4


def split(name: str, labels: dict[int, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = getattr(datasets, f"load_{name}")(as_frame=True).frame
    if labels:
        frame["target"] = frame["target"].map(labels)
    train, test = train_test_split(frame, test_size=0.3, random_state=1)
    return train, test


def fit(model: Any, train: pd.DataFrame) -> Any:
    return model.fit(train.drop(columns="target"), train["target"])


def test_binary_metrics_match_sklearn() -> None:
    # String labels: the positive class is the second in sorted order, "malignant", which
    # is class 0 in scikit-learn's coding.
    train, test = split("breast_cancer", {0: "malignant", 1: "benign"})
    model = fit(make_pipeline(StandardScaler(), LogisticRegression()), train)
    x, y = test.drop(columns="target"), test["target"]
    proba, predicted = model.predict_proba(x), model.predict(x)

    report = evaluate(model, test, "target", "classification", eval_hash=EVAL_HASH)

    assert report.primary_metric == "roc_auc"
    assert report.rows == len(test)
    assert report.details["positive_class"] == "malignant"
    assert report.metrics == pytest.approx(
        {
            "accuracy": skm.accuracy_score(y, predicted),
            "f1": skm.f1_score(y, predicted, pos_label="malignant"),
            "roc_auc": skm.roc_auc_score(y == "malignant", proba[:, 1]),
            "log_loss": skm.log_loss(y, proba),
        }
    )
    assert report.details["confusion_matrix"] == {
        "labels": ["benign", "malignant"],
        "matrix": skm.confusion_matrix(y, predicted, labels=["benign", "malignant"]).tolist(),
    }
    assert report.details["model_format"] == "native"


def test_multiclass_metrics_match_sklearn() -> None:
    train, test = split("wine")
    model = fit(RandomForestClassifier(n_estimators=20, random_state=0, n_jobs=1), train)
    x, y = test.drop(columns="target"), test["target"]
    proba, predicted = model.predict_proba(x), model.predict(x)

    report = evaluate(model, test, "target", "classification", eval_hash=EVAL_HASH)

    assert report.primary_metric == "log_loss"
    assert report.metrics == pytest.approx(
        {
            "accuracy": skm.accuracy_score(y, predicted),
            "f1": skm.f1_score(y, predicted, average="macro"),
            "roc_auc": skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"),
            "log_loss": skm.log_loss(y, proba),
        }
    )
    matrix = report.details["confusion_matrix"]
    assert matrix["labels"] == [0, 1, 2]
    assert matrix["matrix"] == skm.confusion_matrix(y, predicted).tolist()
    assert "positive_class" not in report.details


def test_regression_metrics_match_sklearn() -> None:
    train, test = split("diabetes")
    model = fit(Ridge(), train)
    predicted = model.predict(test.drop(columns="target"))

    report = evaluate(model, test, "target", "regression", eval_hash=EVAL_HASH, dataset="db@2")

    assert report.primary_metric == "r2"
    assert report.dataset == "db@2"
    assert report.metrics == pytest.approx(
        {
            "rmse": math.sqrt(skm.mean_squared_error(test["target"], predicted)),
            "mae": skm.mean_absolute_error(test["target"], predicted),
            "r2": skm.r2_score(test["target"], predicted),
        }
    )


@pytest.mark.parametrize(
    ("name", "task", "factory"),
    [
        (
            "breast_cancer",
            "classification",
            lambda: make_pipeline(StandardScaler(), LogisticRegression()),
        ),
        ("diabetes", "regression", Ridge),
    ],
)
def test_a_package_scores_like_its_model_and_reports_its_latency(
    name: str, task: Any, factory: Any, tmp_path: Path
) -> None:
    train, test = split(name)
    model = fit(factory(), train)
    loaded = load_model(
        package_model(model, tmp_path / "pkg", sample=train.drop(columns="target")).path
    )

    native = evaluate(model, test, "target", task, eval_hash=EVAL_HASH)
    served = evaluate(loaded, test, "target", task, eval_hash=EVAL_HASH, latency_calls=50)

    assert served.details["model_format"] == "onnx"
    assert served.metrics == pytest.approx(native.metrics, rel=1e-4, abs=1e-5)
    assert native.latency is None
    assert served.latency is not None
    assert 0 < served.latency.p50_ms <= served.latency.p99_ms
    assert served.details["latency_calls"] == 50
    # The report is what the gate judges, and survives JSON as the registry stores it.
    assert EvaluationReport.model_validate_json(served.model_dump_json()) == served
    (rule,) = judge(GatePolicy(latency_p99_ms=10_000.0), served, None)
    assert rule.passed
    assert rule.value == served.latency.p99_ms


def test_latency_percentiles_are_ordered() -> None:
    train, test = split("wine")
    model = fit(RandomForestClassifier(n_estimators=5, random_state=0, n_jobs=1), train)

    latency = predict_latency(model, test.drop(columns="target").iloc[:1], calls=30)

    assert 0 < latency.p50_ms <= latency.p99_ms


def test_one_class_and_unseen_classes_leave_metrics_undefined_not_wrong() -> None:
    train, test = split("wine")
    model = fit(RandomForestClassifier(n_estimators=10, random_state=0, n_jobs=1), train)
    only_ones = test[test["target"] == 1]
    unseen = test.assign(target=test["target"].replace({2: 9}))

    single = evaluate(model, only_ones, "target", "classification", eval_hash=EVAL_HASH)
    strange = evaluate(model, unseen, "target", "classification", eval_hash=EVAL_HASH)

    assert "roc_auc" not in single.metrics
    assert "1 of the model's 3 classes" in single.details["undefined"]["roc_auc"]
    assert single.metrics["accuracy"] == pytest.approx(
        np.mean(model.predict(only_ones.drop(columns="target")) == 1)
    )
    nines = int((unseen["target"] == 9).sum())
    assert strange.details["unknown_classes"] == {"labels": ["9"], "rows": nines}
    assert strange.details["confusion_matrix"]["labels"] == [0, 1, 2, 9]
    assert sum(strange.details["confusion_matrix"]["matrix"][3]) == nines
    assert strange.metrics["accuracy"] <= 1 - nines / len(unseen)


def test_rows_without_a_target_are_left_out_and_counted() -> None:
    train, test = split("diabetes")
    model = fit(Ridge(), train)
    holey = test.copy()
    holey.loc[holey.index[:5], "target"] = np.nan

    report = evaluate(model, holey, "target", "regression", eval_hash=EVAL_HASH)

    assert report.rows == len(test) - 5
    assert report.details["dropped_rows"] == 5


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"task": "regression"}, r"the model is a classification model but task is 'regression'"),
        ({"eval_hash": "not-a-hash"}, r"invalid evaluation report"),
        ({"target": "label"}, r"target column 'label' is not in the eval frame"),
        ({"primary_metric": "rmse"}, r"'rmse' is not a classification metric"),
    ],
)
def test_evaluation_refuses_what_it_cannot_score(arguments: dict[str, Any], message: str) -> None:
    train, test = split("breast_cancer")
    model = fit(make_pipeline(StandardScaler(), LogisticRegression()), train)
    call: dict[str, Any] = {"target": "target", "task": "classification", "eval_hash": EVAL_HASH}
    call.update(arguments)

    with pytest.raises(ValidationError, match=message):
        evaluate(model, test, call.pop("target"), call.pop("task"), **call)


def test_latency_needs_exactly_one_row() -> None:
    train, test = split("diabetes")
    model = fit(Ridge(), train)

    with pytest.raises(ValidationError, match="exactly one row"):
        predict_latency(model, test.drop(columns="target").iloc[:2])
