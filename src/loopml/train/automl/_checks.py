"""What AutoML refuses to train on, with the reason and the fix in the message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from loopml.core.errors import ValidationError
from loopml.train.automl._metrics import TaskKind

Task = Literal["classification", "regression"]
MIN_ROWS = 10
# A float target with more distinct values than this is continuous, not a set of classes.
MAX_FLOAT_CLASSES = 20


@dataclass(frozen=True)
class CheckedData:
    """The checked training data.

    Attributes:
        features: the feature columns of the rows that have a target.
        labels: the target of those rows: the class labels, or float values.
        kind: ``binary``, ``multiclass`` or ``regression``.
        dropped_rows: rows left out because their target is missing.
    """

    features: pd.DataFrame
    labels: np.ndarray
    kind: TaskKind
    dropped_rows: int


def _check_frame(frame: Any, target: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    names = list(frame.columns)
    if not all(isinstance(c, str) for c in names):
        odd = [repr(c) for c in names if not isinstance(c, str)][:5]
        raise ValidationError(f"column names must be strings; got {', '.join(odd)}")
    if len(set(names)) != len(names):
        twice = sorted({c for c in names if names.count(c) > 1})[:5]
        raise ValidationError(f"column names must be unique; repeated: {twice}")
    if target not in frame.columns:
        raise ValidationError(
            f"target column {target!r} is not in the frame; its columns are {names[:30]}",
            details={"target": target, "columns": names[:100]},
        )
    if frame.shape[1] < 2:
        raise ValidationError(f"the frame holds only the target {target!r}: no feature columns")
    return frame


def _classification_labels(y: pd.Series[Any], target: str) -> np.ndarray:
    if ptypes.is_float_dtype(y.dtype):
        values = np.asarray(y.to_numpy(dtype=np.float64))
        if not np.all(np.isfinite(values)):
            raise ValidationError(f"target {target!r} holds infinite values")
        if np.array_equal(values, np.round(values)):
            return values.astype(np.int64)
        distinct = len(np.unique(values))
        if distinct > MAX_FLOAT_CLASSES:
            raise ValidationError(
                f"target {target!r} has {distinct} distinct non-integer values: it looks "
                "continuous, so use task='regression' (or bin it into classes first)",
                details={"target": target, "distinct": distinct},
            )
        raise ValidationError(
            f"target {target!r} holds non-integer floats as classes: class labels must be "
            "strings, integers or booleans (cast it), or use task='regression'",
            details={"target": target, "distinct": distinct},
        )
    if isinstance(y.dtype, pd.CategoricalDtype) or ptypes.is_string_dtype(y.dtype):
        return np.asarray(y.astype(object).map(str).to_numpy(dtype=object))
    if ptypes.is_bool_dtype(y.dtype):
        return np.asarray(y.to_numpy(dtype=bool))
    if ptypes.is_integer_dtype(y.dtype):
        return np.asarray(y.to_numpy(dtype=np.int64))
    raise ValidationError(
        f"target {target!r} is {y.dtype}: class labels must be strings, integers or booleans",
        details={"target": target, "dtype": str(y.dtype)},
    )


def _regression_values(y: pd.Series[Any], target: str) -> np.ndarray:
    if ptypes.is_bool_dtype(y.dtype) or not ptypes.is_numeric_dtype(y.dtype):
        raise ValidationError(
            f"target {target!r} is {y.dtype}, not numeric: regression needs numbers; "
            "use task='classification' for labels",
            details={"target": target, "dtype": str(y.dtype)},
        )
    values = np.asarray(y.to_numpy(dtype=np.float64))
    if not np.all(np.isfinite(values)):
        raise ValidationError(f"target {target!r} holds infinite values")
    return values


def check_training_data(frame: Any, target: str, task: str) -> CheckedData:
    """Check a training frame and split it into features and target.

    Raises:
        ValidationError: not a frame, no such target, a target with no values or one
            class, fewer than ``MIN_ROWS`` labelled rows, or a target that does not fit
            the task (a continuous float for classification, text for regression).
    """
    if task not in ("classification", "regression"):
        raise ValidationError(f"task must be 'classification' or 'regression', got {task!r}")
    frame = _check_frame(frame, target)
    present = frame[target].notna()
    if not present.any():
        raise ValidationError(f"target {target!r} has no values: every row is null")
    rows = int(present.sum())
    if rows < MIN_ROWS:
        raise ValidationError(
            f"only {rows} rows have a target: AutoML needs at least {MIN_ROWS}",
            details={"rows": rows, "minimum": MIN_ROWS},
        )
    kept = frame[present]
    features = kept.drop(columns=[target])
    y = kept[target]
    if task == "regression":
        return CheckedData(features, _regression_values(y, target), "regression", len(frame) - rows)
    labels = _classification_labels(y, target)
    classes = pd.unique(labels)
    if len(classes) < 2:
        raise ValidationError(
            f"target {target!r} has one class only ({classes[0]!r}): classification needs "
            "at least two",
            details={"target": target},
        )
    kind: TaskKind = "binary" if len(classes) == 2 else "multiclass"
    return CheckedData(features, labels, kind, len(frame) - rows)
