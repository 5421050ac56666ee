"""The checked arguments and the prepared data of an AutoML run."""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from loopml.core.errors import ValidationError
from loopml.train.automl import _flaml
from loopml.train.automl._checks import CheckedData, check_training_data
from loopml.train.automl._metrics import TaskKind
from loopml.train.automl._preprocess import (
    ColumnPlan,
    build_preprocessor,
    plan_columns,
    training_frame,
)


def _positive(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value > 0


def check_budget(
    budget_s: float,
    max_iter: int | None,
    max_model_mb: float | None,
    max_predict_ms: float | None = None,
) -> None:
    """Refuse a budget, trial cap, size or latency limit that is not a positive number."""
    if not _positive(budget_s):
        raise ValidationError(f"budget_s must be a positive number of seconds, got {budget_s!r}")
    if max_iter is not None and max_iter < 1:
        raise ValidationError(f"max_iter must be at least 1, got {max_iter}")
    if max_model_mb is not None and not _positive(max_model_mb):
        raise ValidationError(
            f"max_model_mb must be a positive number, got {max_model_mb!r}",
            details={"field": "max_model_mb"},
        )
    if max_predict_ms is not None and not _positive(max_predict_ms):
        raise ValidationError(
            f"max_predict_ms must be a positive number of milliseconds, got {max_predict_ms!r}",
            details={"field": "max_predict_ms"},
        )


# The share of the budget one trial of the linear learner may take (by ``_costs``'
# estimate) for it to be searched by default: its solver cannot be stopped at the
# deadline (one elastic-net trial on diamonds' 36,409 x 26 matrix took 11 s, against
# 0.2-3 s for the tree learners' trials there). When it is the first candidate (on
# embeddings, where it is the best head and the trees are the slow ones) it may take half.
LINEAR_SHARE = 0.1
LINEAR_FIRST_SHARE = 0.5
_LINEAR = frozenset({"lrl1", "enet"})


def check_estimators(
    estimators: Sequence[str] | None,
    kind: TaskKind,
    *,
    linear_trial_s: float = 0.0,
    budget_s: float = math.inf,
    linear_first: bool = False,
) -> list[str]:
    """The learners to search, in order: all the task's by default (but the linear one
    when one trial of it, ``linear_trial_s`` by the cost model, would take more than
    ``LINEAR_SHARE`` of ``budget_s``), else the given ones, checked. ``linear_first``
    puts the linear learner first (and lets it take ``LINEAR_FIRST_SHARE``)."""
    allowed = list(_flaml.REGRESSORS if kind == "regression" else _flaml.CLASSIFIERS)
    if estimators is None:
        share = LINEAR_FIRST_SHARE if linear_first else LINEAR_SHARE
        chosen = allowed
        if linear_trial_s > share * budget_s:
            chosen = [e for e in allowed if e not in _LINEAR]
    else:
        chosen = _named(estimators, kind, allowed)
    if linear_first:
        chosen = sorted(chosen, key=lambda e: e not in _LINEAR)
    return chosen


def _named(estimators: Sequence[str], kind: TaskKind, allowed: list[str]) -> list[str]:
    if isinstance(estimators, str) or not estimators:
        raise ValidationError(f"estimators must be a non-empty list of names from {allowed}")
    unknown = [e for e in estimators if e not in allowed]
    if unknown:
        why = "; ".join(f"{e}: {_flaml.EXCLUDED[e]}" for e in unknown if e in _flaml.EXCLUDED)
        raise ValidationError(
            f"cannot search {unknown} for a {kind} task: choose from {allowed}"
            + (f" ({why})" if why else ""),
            details={"unknown": unknown, "allowed": allowed},
        )
    return list(dict.fromkeys(estimators))


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Threads for the search and the final fit: ``n_jobs`` when given (``-1``: every
    core); by default every core the machine leaves idle (from the 1-minute load average),
    at least one."""
    cores = os.cpu_count() or 1
    if n_jobs is not None:
        if n_jobs == -1:
            return cores
        if n_jobs < 1:
            raise ValidationError(f"n_jobs must be -1 (every core) or at least 1, got {n_jobs}")
        return n_jobs
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this platform: one thread is always safe
        return 1
    return max(1, min(cores, int(cores - load + 0.5)))


def _encode(labels: np.ndarray, kind: TaskKind) -> tuple[np.ndarray, np.ndarray | None]:
    """FLAML's labels (class codes, in sorted class order) and the classes."""
    if kind == "regression":
        return labels, None
    classes, codes = np.unique(labels, return_inverse=True)
    return codes.astype(np.int64), classes


def _holdout(
    eval_frame: pd.DataFrame,
    target: str,
    task: Literal["classification", "regression"],
    preprocessor: Any,
    plan: ColumnPlan,
    classes: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    data = check_training_data(eval_frame, target, task)
    if classes is None:
        return preprocessor.transform(training_frame(data.features, plan)), data.labels
    unknown = sorted({str(v) for v in data.labels} - {str(c) for c in classes})
    if unknown:
        raise ValidationError(
            f"the eval frame has classes the training frame lacks: {unknown[:10]}",
            details={"unknown": unknown[:100]},
        )
    codes = np.searchsorted(classes, data.labels)
    return preprocessor.transform(training_frame(data.features, plan)), codes.astype(np.int64)


def _check_keep(keep: Collection[str], features: pd.DataFrame) -> None:
    if isinstance(keep, str):
        raise ValidationError("keep_columns must be a list of column names, not one string")
    missing = sorted(set(keep) - set(features.columns))
    if missing:
        raise ValidationError(
            f"keep_columns names columns the frame lacks: {missing[:10]}; its feature "
            f"columns are {list(features.columns)[:30]}",
            details={"missing": missing[:100]},
        )


@dataclass(frozen=True)
class PreparedData:
    """The checked data, the column plan, the fitted preprocessing and its matrix."""

    data: CheckedData
    plan: ColumnPlan
    preprocessor: Any
    matrix: np.ndarray
    codes: np.ndarray
    classes: np.ndarray | None
    holdout: tuple[np.ndarray, np.ndarray] | None

    @property
    def n_classes(self) -> int:
        return 0 if self.classes is None else len(self.classes)


def prepare(
    data: CheckedData,
    target: str,
    task: Literal["classification", "regression"],
    eval_frame: pd.DataFrame | None,
    keep: Collection[str],
) -> PreparedData:
    """Plan the columns, fit the preprocessing, and transform the (eval) rows."""
    _check_keep(keep, data.features)
    plan = plan_columns(data.features, keep)
    if not plan.numeric and not plan.categories:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(plan.dropped.items())[:10])
        raise ValidationError(f"no usable feature column ({reasons})")
    frame = training_frame(data.features, plan)
    preprocessor = build_preprocessor(plan)
    matrix = np.asarray(preprocessor.fit_transform(frame), dtype=np.float64)
    codes, classes = _encode(data.labels, data.kind)
    holdout = None
    if eval_frame is not None:
        holdout = _holdout(eval_frame, target, task, preprocessor, plan, classes)
    return PreparedData(data, plan, preprocessor, matrix, codes, classes, holdout)
