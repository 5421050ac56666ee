"""The preprocessing every AutoML model starts with, built so that it exports to ONNX.

Numeric and boolean columns get a median ``SimpleImputer``. Text and categorical columns
get a ``OneHotEncoder`` with an explicit category list and ``handle_unknown="ignore"``, and
then, again, an ``OrdinalEncoder`` over the same list (``code_columns``): one column of
codes each, ``0..k-1``, and ``CODE_OTHER`` for a missing or unseen value. LightGBM splits
the code columns as categories (``categorical_feature``: a split sends any subset of a
column's values one way), which one-hot columns cannot: on txhousing (46 cities) its
default's test RMSE was 10,283 on one-hot columns and 9,511 with the codes beside them;
the other learners keep the one-hot columns and read the codes as numbers, which gained
or lost about 1 % (random forest and extra trees, AutoGluon's encoding for them).

* a missing value is left out of the categories, so it encodes as all zeros, the same as
  an unseen category. That is what makes the ONNX graph agree with the native model: the
  package feeds a missing string to ONNX as ``""`` and skl2onnx's string imputer cannot
  take a NaN ``missing_values``, so no imputer can be put in front of the encoder; the
  native encoder sees NaN, ONNX sees ``""``, and both are unknown to it. ``""`` is
  therefore never a category either.
* at most ``MAX_CATEGORIES`` of the most frequent values per column become categories;
  rarer ones encode as unknown, so an ID-like column cannot explode the matrix.

A date or time column (``datetime64``, zoned or not, ``date``/``datetime`` objects, or
text whose every value is an ISO-8601 date or time: ``_iso_dates``) becomes calendar
numbers (``loopml.packaging.dates``): ``<column>.year``, ``.month``, ``.day``,
``.day_of_week``, ``.day_of_year``, ``.days`` (since 1970) and ``.hour`` when some value is
not at midnight, median-imputed like the numeric columns. The packaged signature
keeps the original column, typed ``datetime``, and a caller sends dates, not the numbers.

Timedelta columns, columns with no values at all and identifier-like columns (see
``_identifiers``; unless the caller keeps them) are not used (``dropped``), each with its
reason; the fitted pipeline neither needs nor minds them.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from loopml.packaging import dates
from loopml.train.automl._identifiers import identifier_reason

MAX_CATEGORIES = 100
# The code of a missing or unseen value in a category column (one past the largest code):
# the same natively (NaN) and in ONNX (which is fed ``""``, unseen), and not negative, which
# LightGBM would take as missing with a warning at every prediction.
CODE_OTHER = MAX_CATEGORIES
# ISO-8601's extended form, a date and an optional time of day and offset: what a text
# column's values must all look like to be dates. A bare number ("20240501") or a year
# and month ("2024-05") is more often a code than a date, and stays text.
_ISO_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"
)


@dataclass(frozen=True)
class ColumnPlan:
    """Which columns are used, and how.

    Attributes:
        numeric: numeric and boolean columns, and the date columns' parts (median-imputed).
        categories: each text/categorical column and its categories, in encoding order.
        dates: each date column and its parts (``loopml.packaging.dates.PARTS``), whose
            columns ``<column>.<part>`` are among ``numeric``.
        dropped: columns left out, each with the reason.
        identifiers: the identifier-like columns among ``dropped``.
    """

    numeric: list[str] = field(default_factory=list)
    categories: dict[str, list[str]] = field(default_factory=dict)
    dates: dict[str, list[str]] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    identifiers: list[str] = field(default_factory=list)

    def used(self, columns: list[str]) -> list[str]:
        """The used columns among ``columns``, in that order."""
        kept = set(self.numeric) | set(self.categories) | set(self.dates)
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
        is_dates = _is_dates(column)
        # A date unique per row is no identifier: its calendar numbers repeat.
        reason = None if name in keep or is_dates else identifier_reason(column)
        if reason is not None:
            plan.dropped[name] = reason
            plan.identifiers.append(name)
        elif ptypes.is_timedelta64_dtype(dtype):
            plan.dropped[name] = (
                f"{dtype} columns are not used: derive numbers from them (a number of days, "
                "of hours) in a transform"
            )
        elif column.isna().all():
            plan.dropped[name] = "every value is missing"
        elif is_dates:
            parts = _date_parts(column)
            plan.dates[name] = parts
            plan.numeric.extend(dates.feature_name(name, p) for p in parts)
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


def _is_dates(column: pd.Series[Any]) -> bool:
    if ptypes.is_datetime64_any_dtype(column.dtype):
        return True
    if column.dtype != object and not isinstance(column.dtype, pd.StringDtype):
        return False
    kind = ptypes.infer_dtype(column, skipna=True)
    return kind in ("date", "datetime") or (kind == "string" and _iso_dates(column))


def _iso_dates(column: pd.Series[Any]) -> bool:
    """Whether every value present of a text column is an ISO-8601 date or time: of the
    extended form (``_ISO_DATE``), parsed strictly by pandas and by the model server's own
    parser (``dates.parse``), so what training takes as a date, the server takes too. One
    value of any other form keeps the column text: the server would refuse that value in
    a request, where a text column takes any."""
    present = column.dropna()
    # The first value rejects most text columns before their values are gathered.
    if present.empty or not _ISO_DATE.fullmatch(str(present.iloc[0])):
        return False
    values = pd.unique(present.astype(str))
    if not all(_ISO_DATE.fullmatch(v) for v in values):
        return False
    try:
        pd.to_datetime(pd.Series(values), format="ISO8601", utc=True)
        dates.parse(list(values))
    except (ValueError, dates.BadDate):
        return False
    return True


def _date_parts(column: pd.Series[Any]) -> list[str]:
    """Every calendar part but ``hour``, which only a column with times of day gets."""
    values = dates.utc_values(column)
    values = values[~np.isnat(values)]
    timed = bool((values != values.astype("datetime64[D]")).any())
    return [p for p in dates.PARTS if p != "hour" or timed]


def training_frame(features: pd.DataFrame, plan: ColumnPlan) -> pd.DataFrame:
    """The used features as the pipeline is fitted on them: text as ``str``, numbers as
    float, a date column as its parts' columns, in its place. The pipeline then knows only
    these columns (``feature_names_in_``), so neither a packaged signature nor a caller
    needs the dropped ones.
    """
    out: dict[str, Any] = {}
    for name in plan.used(list(features.columns)):
        column = features[name]
        if name in plan.categories:
            out[name] = as_text(column)
        elif name in plan.dates:
            out.update(dates.part_columns(name, dates.utc_values(column), plan.dates[name]))
        else:
            out[name] = column.astype(np.float64)
    return pd.DataFrame(out, index=features.index)


def code_columns(plan: ColumnPlan) -> tuple[int, ...]:
    """Where the category codes are in the preprocessed matrix: after the numeric columns
    and the one-hot ones, one per text or categorical column."""
    first = len(plan.numeric) + sum(len(c) for c in plan.categories.values())
    return tuple(range(first, first + len(plan.categories)))


def build_preprocessor(plan: ColumnPlan) -> Any:
    """An unfitted ``ColumnTransformer`` for the plan (dense float output): the numeric
    columns, the one-hot columns, the code columns (``code_columns``), in that order."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

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
        codes = OrdinalEncoder(
            categories=[np.array(c, dtype=object) for c in plan.categories.values()],
            handle_unknown="use_encoded_value",
            unknown_value=CODE_OTHER,
            encoded_missing_value=CODE_OTHER,
        )
        steps.append(("codes", codes, list(plan.categories)))
    return ColumnTransformer(steps, remainder="drop", sparse_threshold=0.0)
