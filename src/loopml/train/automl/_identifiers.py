"""Identifier-like columns: a row id, an order number, a customer key. They are unique per
row or grow with the row order, so a model can only memorize them: on the training rows
they look predictive (a holdout drawn from the same range agrees), and on new rows they
are noise or, worse, a proxy for time. AutoML leaves them out unless told to keep them.

A column is identifier-like when it has at least ``MIN_ROWS`` values and:

- it is text or integer (a boolean never is) and every non-missing value differs, with
  at most ``MAX_MISSING_SHARE`` missing; floats are not judged by this, since a measured
  quantity is often unique per row;
- or it is integer, monotone in row order (never decreasing, or never increasing), and at
  least ``MIN_DISTINCT_SHARE`` of its values differ (a sorted column of a few values, an
  age in a frame sorted by age, is not an identifier).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from pandas.api import types as ptypes

MIN_ROWS = 20
MAX_MISSING_SHARE = 0.05
MIN_DISTINCT_SHARE = 0.5


def _integers(column: pd.Series[Any]) -> bool:
    dtype = column.dtype
    return ptypes.is_integer_dtype(dtype) and not ptypes.is_bool_dtype(dtype)


def _text(column: pd.Series[Any]) -> bool:
    dtype = column.dtype
    return bool(
        ptypes.is_string_dtype(dtype)
        or ptypes.is_object_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    )


def identifier_reason(column: pd.Series[Any]) -> str | None:
    """Why ``column`` looks like an identifier, or ``None`` if it does not."""
    values = column.dropna()
    rows = len(column)
    if len(values) < MIN_ROWS or not (_integers(column) or _text(column)):
        return None
    distinct = values.nunique()
    if distinct == len(values) and len(values) >= (1 - MAX_MISSING_SHARE) * rows:
        return f"identifier-like: unique per row ({distinct} distinct values in {rows} rows)"
    monotone = values.is_monotonic_increasing or values.is_monotonic_decreasing
    if _integers(column) and distinct >= MIN_DISTINCT_SHARE * len(values) and monotone:
        return f"identifier-like: monotone in row order ({distinct} distinct values in {rows} rows)"
    return None
