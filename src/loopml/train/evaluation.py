"""Model evaluation: metrics on a frozen eval set, and single-row predict latency (of a
model in memory, or of a package as the model server runs it).

``evaluate`` scores an in-memory model (the Pipeline ``run_automl`` returns, or any fitted
scikit-learn classifier or regressor) and a loaded package (``LoadedModel``) through the
same code, so a challenger and the champion are measured alike on the same eval set. It
returns the registry's ``EvaluationReport`` (``loopml.core.gate``), ready to be stored as a
model version's evaluation and judged by the gate.

Metrics (names as in ``loopml.core.gate.METRIC_DIRECTIONS``):

* classification: ``accuracy``; ``f1`` (binary: of the positive class, the second of the
  model's sorted classes; multiclass: the macro average over the model's classes);
  ``roc_auc`` (binary; multiclass: one-vs-rest, macro); ``log_loss``; and in ``details``
  the confusion matrix (rows: true label, columns: predicted, both in ``labels`` order).
* regression: ``rmse``, ``mae``, ``r2``.

A metric the eval set cannot define (ROC AUC when it holds one class, R² on one row) is
left out of ``metrics`` and explained in ``details["undefined"]``; rows whose class the
model never saw count as errors in accuracy, F1 and the confusion matrix, and are left out
of ROC AUC and log loss (``details["unknown_classes"]``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from loopml.core.errors import ValidationError
from loopml.core.gate import EvaluationReport, Latency
from loopml.packaging import LoadedModel

Task = Literal["classification", "regression"]
CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
DEFAULT_LATENCY_CALLS = 200


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _model_task(model: Any) -> Task:
    if isinstance(model, LoadedModel):
        return model.manifest.signature.task
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(model) and hasattr(model, "predict_proba"):
        return "classification"
    if is_regressor(model):
        return "regression"
    raise ValidationError(
        f"cannot evaluate a {type(model).__name__}: expected a fitted scikit-learn "
        "classifier (with predict_proba) or regressor, or a loaded model package"
    )


def _classes(model: Any) -> list[Any]:
    if isinstance(model, LoadedModel):
        return list(model.manifest.signature.classes or [])
    return [_plain(c) for c in model.classes_]


def _align(y: pd.Series[Any], classes: list[Any]) -> np.ndarray:
    """The true labels typed like the model's classes (``1.0`` read as class ``1``)."""
    if all(isinstance(c, str) for c in classes):
        return np.asarray(y.map(lambda v: v if isinstance(v, str) else str(_plain(v))), object)
    if all(isinstance(c, bool) for c in classes) and y.isin([True, False]).all():
        return np.asarray(y.to_numpy(dtype=bool))
    numeric = pd.to_numeric(y, errors="coerce")
    if all(isinstance(c, int) for c in classes) and numeric.notna().all():
        values = np.asarray(numeric.to_numpy(dtype=np.float64))
        if np.array_equal(values, np.round(values)):
            return values.astype(np.int64)
    return np.asarray(y.to_numpy())


def _split(eval_frame: Any, target: str) -> tuple[pd.DataFrame, pd.Series[Any], int]:
    if not isinstance(eval_frame, pd.DataFrame):
        raise ValidationError(f"expected a pandas DataFrame, got {type(eval_frame).__name__}")
    if target not in eval_frame.columns:
        raise ValidationError(
            f"target column {target!r} is not in the eval frame; its columns are "
            f"{list(eval_frame.columns)[:30]}"
        )
    labelled = eval_frame[eval_frame[target].notna()]
    if labelled.empty:
        raise ValidationError(f"the eval frame has no row with a value for {target!r}")
    return labelled.drop(columns=[target]), labelled[target], len(eval_frame) - len(labelled)


def _f1(truth: np.ndarray, predicted: np.ndarray, classes: list[Any]) -> float:
    from sklearn.metrics import f1_score

    if len(classes) == 2:
        positive = classes[1]
        return float(f1_score(truth == positive, predicted == positive, zero_division=0.0))
    return float(f1_score(truth, predicted, labels=classes, average="macro", zero_division=0.0))


def _roc_auc(truth: np.ndarray, proba: np.ndarray, classes: list[Any]) -> float | str:
    """ROC AUC on rows of known classes, or why the eval set cannot define it."""
    from sklearn.metrics import roc_auc_score

    present = set(truth.tolist())
    if len(present) < 2 or (len(classes) > 2 and present != set(classes)):
        return (
            f"the eval set holds {len(present)} of the model's {len(classes)} classes; "
            "ROC AUC needs every one"
        )
    if len(classes) == 2:
        return float(roc_auc_score(truth == classes[1], proba[:, 1]))
    return float(roc_auc_score(truth, proba, multi_class="ovr", average="macro", labels=classes))


def _classification(
    model: Any, features: pd.DataFrame, y: pd.Series[Any]
) -> tuple[dict[str, float], dict[str, Any]]:
    from sklearn.metrics import confusion_matrix, log_loss

    classes = _classes(model)
    truth = _align(y, classes)
    predicted = np.asarray(model.predict(features))
    proba = np.asarray(model.predict_proba(features), dtype=np.float64)
    # ONNX Runtime computes in float32: rows sum to 1 within ~1e-7, not within the 1e-8
    # scikit-learn's log_loss checks in float64. Renormalizing changes no ranking.
    proba = proba / proba.sum(axis=1, keepdims=True)
    known = pd.Series(truth).isin(classes).to_numpy()
    unseen = sorted(set(truth[~known].tolist()), key=str)
    values = {"accuracy": float(np.mean(predicted == truth)), "f1": _f1(truth, predicted, classes)}
    undefined: dict[str, str] = {}
    auc = _roc_auc(truth[known], proba[known], classes)
    if isinstance(auc, str):
        undefined["roc_auc"] = auc
    else:
        values["roc_auc"] = auc
    if known.any():
        values["log_loss"] = float(log_loss(truth[known], proba[known], labels=classes))
    else:
        undefined["log_loss"] = "no eval row has a class the model knows"
    labels = [*classes, *unseen]
    matrix = confusion_matrix(truth, predicted, labels=np.asarray(labels, dtype=object))
    details: dict[str, Any] = {
        "confusion_matrix": {"labels": [_plain(v) for v in labels], "matrix": matrix.tolist()},
        "classes": classes,
    }
    if len(classes) == 2:
        details["positive_class"] = classes[1]
    if unseen:
        details["unknown_classes"] = {
            "labels": [str(v) for v in unseen[:100]],
            "rows": int((~known).sum()),
        }
    if undefined:
        details["undefined"] = undefined
    return values, details


def _regression(
    model: Any, features: pd.DataFrame, y: pd.Series[Any]
) -> tuple[dict[str, float], dict[str, Any]]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    try:
        truth = pd.to_numeric(y, errors="raise").to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"a regression target must be numeric: {exc}") from exc
    predicted = np.asarray(model.predict(features), dtype=np.float64).ravel()
    values = {
        "rmse": math.sqrt(float(mean_squared_error(truth, predicted))),
        "mae": float(mean_absolute_error(truth, predicted)),
    }
    details: dict[str, Any] = {}
    if len(truth) >= 2 and np.ptp(truth) > 0:
        values["r2"] = float(r2_score(truth, predicted))
    else:
        details["undefined"] = {"r2": "R² needs at least two distinct target values"}
    return values, details


def _default_primary(task: Task, classes: int) -> str:
    if task == "regression":
        return "r2"
    return "roc_auc" if classes == 2 else "log_loss"


def evaluate(
    model: Any,
    eval_frame: pd.DataFrame,
    target: str,
    task: Task,
    *,
    eval_hash: str,
    primary_metric: str | None = None,
    dataset: str | None = None,
    latency_calls: int = 0,
) -> EvaluationReport:
    """Score a model on an eval set; optionally measure its single-row predict latency.

    Args:
        model: a fitted scikit-learn classifier/regressor or Pipeline (what ``run_automl``
            returns), or a ``LoadedModel`` from ``loopml.packaging.load_model``.
        eval_frame: the eval rows, target column included (rows without a target are
            left out and counted in ``details["dropped_rows"]``).
        target: the target column's name.
        task: ``classification`` or ``regression``; must match the model.
        eval_hash: the eval set's identity (the snapshot's hash), 16 to 64 hex digits;
            reports are only ever compared on the same one.
        primary_metric: the metric the gate compares by default: ``roc_auc`` (binary),
            ``log_loss`` (multiclass) or ``r2`` (regression) when omitted.
        dataset: the dataset version the eval set belongs to (``name@3``), if known.
        latency_calls: when positive, ``predict_latency`` on the first eval row with that
            many calls: a one-row frame through ``model``. A registered version's
            evaluation (``loopml.registry.evaluate``), which the gate judges, measures
            ``served_latency`` instead, the model server's path.

    Returns:
        The evaluation report, ready for ``loopml.registry.gate.save_evaluation``.

    Raises:
        ValidationError: the task does not match the model, an unknown primary metric,
            no labelled row, or a frame the model cannot read.
    """
    if task not in ("classification", "regression"):
        raise ValidationError(f"task must be 'classification' or 'regression', got {task!r}")
    if _model_task(model) != task:
        raise ValidationError(
            f"the model is a {_model_task(model)} model but task is {task!r}",
            details={"task": task},
        )
    names = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    if primary_metric is not None and primary_metric not in names:
        raise ValidationError(
            f"primary_metric {primary_metric!r} is not a {task} metric: expected one of "
            f"{list(names)}"
        )
    features, y, dropped = _split(eval_frame, target)
    if task == "classification":
        values, details = _classification(model, features, y)
        primary = primary_metric or _default_primary(task, len(details["classes"]))
    else:
        values, details = _regression(model, features, y)
        primary = primary_metric or _default_primary(task, 0)
    details["model_format"] = model.format if isinstance(model, LoadedModel) else "native"
    if dropped:
        details["dropped_rows"] = dropped
    latency = None
    if latency_calls > 0:
        latency = predict_latency(model, features.iloc[:1], calls=latency_calls)
        details["latency_calls"] = latency_calls
    try:
        return EvaluationReport(
            eval_hash=eval_hash,
            task=task,
            primary_metric=primary,
            metrics=values,
            rows=len(y),
            details=details,
            latency=latency,
            dataset=dataset,
        )
    except Exception as exc:  # pydantic's ValidationError: a malformed eval_hash
        raise ValidationError(f"invalid evaluation report: {exc}") from exc


def predict_latency(
    model: Any, row: pd.DataFrame, *, calls: int = DEFAULT_LATENCY_CALLS
) -> Latency:
    """Single-row ``predict`` latency: the median and 99th percentile of ``calls`` calls.

    The first calls (a tenth, at least one) warm caches and are not counted. For a
    ``LoadedModel`` this is the serving path: input checks and casts, then ONNX Runtime
    (or skops when that is the package's primary format).

    Raises:
        ValidationError: ``row`` is not a one-row frame, or ``calls`` is below 1.
    """
    if not isinstance(row, pd.DataFrame) or len(row) != 1:
        raise ValidationError("predict_latency needs a DataFrame of exactly one row")
    return _timed(lambda: model.predict(row), calls)


def served_latency(
    path: Path, manifest_sha256: str, row: pd.DataFrame, *, calls: int = DEFAULT_LATENCY_CALLS
) -> Latency:
    """Single-row latency of the package in ``path`` as the model server runs it
    (``load_runtime``: one ONNX Runtime thread), per call: the request's checks and casts
    (``columns_from_instances``, fed the row as a client's JSON) and the model call.

    Raises:
        ValidationError: ``row`` is not a one-row frame, or ``calls`` is below 1.
    """
    from loopml.packaging.runtime import load_runtime

    if not isinstance(row, pd.DataFrame) or len(row) != 1:
        raise ValidationError("served_latency needs a DataFrame of exactly one row")
    runtime = load_runtime(path, manifest_sha256=manifest_sha256)
    # The columns the package takes (AutoML's leaves out identifier-like ones), as a
    # client sends them.
    taken = row[[c for c in row.columns if c in set(runtime.input_names)]]
    records = json.loads(taken.to_json(orient="records", date_format="iso"))
    return _timed(lambda: runtime.predict(runtime.columns_from_instances(records)), calls)


def _timed(call: Callable[[], object], calls: int) -> Latency:
    """The median and 99th percentile of ``calls`` timed calls, after a tenth (at least
    one) not counted, which warm caches."""
    if calls < 1:
        raise ValidationError(f"calls must be at least 1, got {calls}")
    for _ in range(max(1, calls // 10)):
        call()
    samples = np.empty(calls, dtype=np.float64)
    for i in range(calls):
        began = time.perf_counter_ns()
        call()
        samples[i] = (time.perf_counter_ns() - began) / 1e6
    p50, p99 = np.percentile(samples, [50, 99])
    return Latency(p50_ms=float(p50), p99_ms=float(p99))
