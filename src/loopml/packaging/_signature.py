"""Signature inference, and turning a caller's frame into what the model was trained on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from loopml.core.errors import ValidationError
from loopml.packaging import dates
from loopml.packaging._manifest import ClassLabel, ColumnSpec, ColumnType, Signature

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported where a frame is built or read: a model server serving ONNX never
# needs it, and it would be most of a replica's memory (75 MB).

SUPPORTED = (
    "scikit-learn classifiers and regressors (estimators and Pipelines, ColumnTransformer "
    "included), LightGBM LGBMClassifier/LGBMRegressor and XGBoost XGBClassifier/XGBRegressor"
)


def _type_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def final_estimator(model: Any) -> Any:
    """The estimator that makes the prediction: the last step of (nested) Pipelines."""
    from sklearn.pipeline import Pipeline

    while isinstance(model, Pipeline):
        model = model.steps[-1][1]
    return model


def check_supported(model: Any) -> Literal["classification", "regression"]:
    """The model's task; ``ValidationError`` naming the type if loopml cannot package it."""
    from sklearn.base import BaseEstimator, is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if not isinstance(model, BaseEstimator) or not hasattr(model, "predict"):
        raise ValidationError(
            f"cannot package a {_type_name(model)}: loopml packages {SUPPORTED}",
            details={"type": _type_name(model)},
        )
    if is_classifier(model) and hasattr(model, "predict_proba"):
        task: Literal["classification", "regression"] = "classification"
    elif is_regressor(model):
        task = "regression"
    else:
        raise ValidationError(
            f"cannot package a {_type_name(model)}: it is neither a classifier with "
            f"predict_proba nor a regressor; loopml packages {SUPPORTED}",
            details={"type": _type_name(model)},
        )
    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise ValidationError(f"the {_type_name(model)} is not fitted: call fit first") from exc
    return task


def flavor_of(model: Any) -> Literal["sklearn", "lightgbm", "xgboost"]:
    """``lightgbm`` or ``xgboost`` when the final estimator comes from that library, else
    ``sklearn``."""
    root = type(final_estimator(model)).__module__.split(".")[0]
    if root == "lightgbm":
        return "lightgbm"
    return "xgboost" if root == "xgboost" else "sklearn"


def column_type(series: pd.Series[Any]) -> ColumnType:
    """The logical type of one column, from its pandas dtype."""
    from pandas.api import types as ptypes

    if ptypes.is_bool_dtype(series.dtype):
        return "boolean"
    if ptypes.is_integer_dtype(series.dtype):
        return "integer"
    if ptypes.is_float_dtype(series.dtype):
        return "float"
    return "string"


def _label_value(value: Any) -> ClassLabel:
    # numpy scalars are not JSON; .item() gives the equal Python scalar.
    item = value.item() if isinstance(value, np.generic) else value
    if not isinstance(item, str | int | float | bool):
        raise ValidationError(f"class label {value!r} is not a string, number or boolean")
    return item


def _input_columns(model: Any, sample: pd.DataFrame) -> list[ColumnSpec]:
    names = getattr(model, "feature_names_in_", None)
    # LightGBM reports its own sanitized names ("mean radius" -> "mean_radius"); they are
    # only usable when the sample really holds them.
    if names is not None:
        specs = _specs(sample, [str(n) for n in names])
        if specs is not None:
            return specs
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and expected != sample.shape[1]:
        raise ValidationError(
            f"the model takes {expected} features but the sample has {sample.shape[1]} "
            f"columns ({list(sample.columns)[:20]}); pass exactly the model's input columns"
        )
    return [ColumnSpec(name=str(c), type=column_type(sample[c])) for c in sample.columns]


def _specs(sample: pd.DataFrame, names: list[str]) -> list[ColumnSpec] | None:
    """The signature of a model taking ``names``: a sample column each, or a run of
    ``<column>.<part>`` names of a sample column (a datetime one, see loopml.packaging.dates);
    ``None`` when a name is neither."""
    specs: list[ColumnSpec] = []
    for name in names:
        if name in sample.columns:
            specs.append(ColumnSpec(name=name, type=column_type(sample[name])))
            continue
        column, _, part = name.rpartition(".")
        if column not in sample.columns or part not in dates.PARTS:
            return None
        last = specs[-1] if specs else None
        if last is not None and last.name == column and last.parts is not None:
            specs[-1] = ColumnSpec(name=column, type="datetime", parts=[*last.parts, part])
        elif any(s.name == column for s in specs):
            return None
        else:
            specs.append(ColumnSpec(name=column, type="datetime", parts=[part]))
    return specs


def infer_signature(model: Any, sample: pd.DataFrame) -> Signature:
    """Infer the signature of a fitted model from a sample of its input frame.

    Args:
        model: a fitted scikit-learn classifier/regressor (or Pipeline) or LightGBM model.
        sample: rows shaped like the training frame; columns the model did not see at
            fit time (a target column, say) are left out when the model knows its
            feature names.

    Returns:
        The inferred signature.

    Raises:
        ValidationError: the model is not a supported kind, or the sample lacks columns.
    """
    import pandas as pd

    if not isinstance(sample, pd.DataFrame) or sample.empty:
        raise ValidationError("the sample must be a non-empty pandas DataFrame")
    task = check_supported(model)
    inputs = _input_columns(model, sample)
    if task == "regression":
        return Signature(
            inputs=inputs, outputs=[ColumnSpec(name="prediction", type="float")], task=task
        )
    classes = [_label_value(c) for c in model.classes_]
    label_type = column_type(pd.Series(np.asarray(model.classes_)))
    outputs = [
        ColumnSpec(name="label", type=label_type),
        ColumnSpec(name="probabilities", type="float"),
    ]
    return Signature(inputs=inputs, outputs=outputs, task=task, classes=classes)


def _cast(series: pd.Series[Any], kind: ColumnType) -> pd.Series[Any]:
    import pandas as pd
    from pandas.api import types as ptypes

    if kind == "string":
        return series.astype(object).map(
            lambda v: v if isinstance(v, str) or pd.isna(v) else str(v)
        )
    if kind == "datetime":
        return pd.Series(dates.utc_values(series), index=series.index)
    if kind == "boolean" and ptypes.is_bool_dtype(series.dtype):
        return series.astype(bool)
    numeric = pd.to_numeric(series, errors="raise")
    if kind == "float":
        return numeric.astype(np.float64)
    values = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = values[~np.isnan(values)]
    if kind == "boolean":
        if numeric.isna().any() or not np.isin(finite, (0.0, 1.0)).all():
            raise ValueError("only true/false or 0/1 are booleans")
        return numeric.astype(bool)
    if not np.array_equal(finite, np.round(finite)):
        raise ValueError("values with a fraction are not integers")
    # A missing integer stays NaN (float), which imputers in the model can handle.
    return numeric.astype(np.float64) if numeric.isna().any() else numeric.astype(np.int64)


def prepare_frame(frame: Any, signature: Signature) -> pd.DataFrame:
    """The signature's columns of ``frame``, in order, cast to their types.

    Extra columns are ignored. Raises ``ValidationError`` for a missing column or a value
    that cannot be cast, naming the expected and received columns or types.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    expected = [c.name for c in signature.inputs]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"missing input columns {missing}: expected {expected}, got {list(frame.columns)}",
            details={"missing": missing, "expected": expected},
        )
    out: dict[str, pd.Series[Any]] = {}
    for spec in signature.inputs:
        try:
            out[spec.name] = _cast(frame[spec.name], spec.type)
        except (ValueError, TypeError) as exc:
            raise ValidationError(
                f"column {spec.name!r} must be {spec.type}, got dtype "
                f"{frame[spec.name].dtype} that cannot be cast: {exc}",
                details={"column": spec.name, "expected": spec.type},
            ) from exc
    return pd.DataFrame(out, index=frame.index)


def model_frame(frame: pd.DataFrame, signature: Signature) -> pd.DataFrame:
    """A prepared frame as the native model takes it: a datetime column as its parts."""
    return dates.expand_frame(frame, signature)


def onnx_feed(frame: pd.DataFrame, signature: Signature, input_names: list[str]) -> dict[str, Any]:
    """ONNX inputs for a prepared frame: the i-th graph input gets the model's i-th column
    (the signature's, a datetime column as its parts).

    Each column is one ``[N, 1]`` tensor: strings as a string tensor (a missing value as ""),
    every other type as float32.
    """
    columns = dates.model_columns(signature)
    if len(input_names) != len(columns):
        raise ValidationError(
            f"the ONNX graph has {len(input_names)} inputs but the model "
            f"{len(columns)} columns; the package is inconsistent"
        )
    frame = model_frame(frame, signature)
    feed: dict[str, Any] = {}
    for name, spec in zip(input_names, columns, strict=True):
        column = frame[spec.name]
        if spec.type == "string":
            values = column.where(column.notna(), "").to_numpy(dtype=object)
        else:
            values = column.to_numpy(dtype=np.float32, na_value=np.nan)
        feed[name] = values.reshape(-1, 1)
    return feed
