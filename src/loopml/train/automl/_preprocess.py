"""The preprocessing every AutoML model starts with, built so that it exports to ONNX.

Numeric and boolean columns get a median ``SimpleImputer``. Text and categorical columns
get a ``OneHotEncoder`` with an explicit category list and ``handle_unknown="ignore"``:

* a missing value is left out of the categories, so it encodes as all zeros, the same as
  an unseen category. That is what makes the ONNX graph agree with the native model: the
  package feeds a missing string to ONNX as ``""`` and skl2onnx's string imputer cannot
  take a NaN ``missing_values``, so no imputer can be put in front of the encoder; the
  native encoder sees NaN, ONNX sees ``""``, and both are unknown to it. ``""`` is
  therefore never a category either.
* at most ``MAX_CATEGORIES`` of the most frequent values per column become categories;
  rarer ones encode as unknown, so an ID-like column cannot explode the matrix.

Datetime-like columns, columns with no values at all and identifier-like columns (see
``_identifiers``; unless the caller keeps them) are not used (``dropped``), each with its
reason; the fitted pipeline neither needs nor minds them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from loopml.train.automl._identifiers import identifier_reason

MAX_CATEGORIES = 100


@dataclass(frozen=True)
class ColumnPlan:
    """Which columns are used, and how.

    Attributes:
        numeric: numeric and boolean columns (median-imputed).
        categories: each text/categorical column and its categories, in encoding order.
        dropped: columns left out, each with the reason.
        identifiers: the identifier-like columns among ``dropped``.
    """

    numeric: list[str] = field(default_factory=list)
    categories: dict[str, list[str]] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    identifiers: list[str] = field(default_factory=list)

    def used(self, columns: list[str]) -> list[str]:
        """The used columns among ``columns``, in that order."""
        kept = set(self.numeric) | set(self.categories)
        return [c for c in columns if c in kept]


def as_text(series: pd.Series[Any]) -> pd.Series[Any]:
    """A text column as the packaged model sees it: ``str`` values, NaN where missing."""
    return series.astype(object).map(lambda v: v if isinstance(v, str) or pd.isna(v) else str(v))


def _categories(series: pd.Series[Any]) -> list[str]:
    counts = as_text(series).dropna().value_counts()
    counts = counts[counts.index != ""]
    # Most frequent first, ties by value, so the same data gives the same encoding.
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:MAX_CATEGORIES]
    return sorted(str(value) for value, _ in ranked)


def plan_columns(features: pd.DataFrame, keep: Collection[str] = ()) -> ColumnPlan:
    """Decide, per column, whether and how the preprocessing uses it; the columns in
    ``keep`` are used even when they look like identifiers."""
    plan = ColumnPlan()
    for name in features.columns:
        column = features[name]
        dtype = column.dtype
        reason = None if name in keep else identifier_reason(column)
        if reason is not None:
            plan.dropped[name] = reason
            plan.identifiers.append(name)
        elif ptypes.is_datetime64_any_dtype(dtype) or ptypes.is_timedelta64_dtype(dtype):
            plan.dropped[name] = (
                f"{dtype} columns are not used: derive numbers from them (an age, an hour, "
                "a day of the week) in a transform"
            )
        elif column.isna().all():
            plan.dropped[name] = "every value is missing"
        elif ptypes.is_bool_dtype(dtype) or (
            ptypes.is_numeric_dtype(dtype) and not ptypes.is_complex_dtype(dtype)
        ):
            plan.numeric.append(name)
        else:
            categories = _categories(column)
            if categories:
                plan.categories[name] = categories
            else:
                plan.dropped[name] = 'every value is missing or ""'
    return plan


def training_frame(features: pd.DataFrame, plan: ColumnPlan) -> pd.DataFrame:
    """The used features as the pipeline is fitted on them: text as ``str``, numbers as
    float. The pipeline then knows only these columns (``feature_names_in_``), so neither
    a packaged signature nor a caller needs the dropped ones.
    """
    used = set(plan.numeric) | set(plan.categories)
    out = features[[c for c in features.columns if c in used]].copy()
    for name in plan.categories:
        out[name] = as_text(out[name])
    for name in plan.numeric:
        out[name] = out[name].astype(np.float64)
    return out


def build_preprocessor(plan: ColumnPlan) -> Any:
    """An unfitted ``ColumnTransformer`` for the plan (dense float output)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    steps: list[tuple[str, Any, list[str]]] = []
    if plan.numeric:
        steps.append(("numeric", SimpleImputer(strategy="median"), list(plan.numeric)))
    if plan.categories:
        encoder = OneHotEncoder(
            categories=[np.array(c, dtype=object) for c in plan.categories.values()],
            handle_unknown="ignore",
            sparse_output=False,
        )
        steps.append(("categorical", encoder, list(plan.categories)))
    return ColumnTransformer(steps, remainder="drop", sparse_threshold=0.0)
