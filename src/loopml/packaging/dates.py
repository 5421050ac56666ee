"""Date and time columns as the calendar numbers a model is trained on.

A signature column of type ``datetime`` reaches the model as one float column per part
in its spec's ``parts`` (``year``, ``month``, ``day``, ``day_of_week`` with Monday 0,
``day_of_year``, ``hour``, ``days`` since 1970-01-01), named ``<column>.<part>``; a missing
value gives NaN in each. Training (loopml.train.automl) and every path that feeds a
packaged model (the runtime's arrays, a pandas frame) derive them here, from
``datetime64[us]`` values in UTC, so they cannot disagree. Times with an offset are
converted to UTC first; times without one are taken as UTC.

NumPy only at import: the model server imports this and must not load pandas.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.packaging._manifest import ColumnSpec, DatePart, Signature

if TYPE_CHECKING:
    import pandas as pd

PARTS: tuple[DatePart, ...] = ("year", "month", "day", "day_of_week", "day_of_year", "hour", "days")
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_NAT = np.iinfo(np.int64).min


class BadDate(ValueError):
    """A value that is not a date or time; ``row`` is its place in the column."""

    def __init__(self, row: int) -> None:
        super().__init__(f"row {row} is not a date or time")
        self.row = row


def feature_name(column: str, part: str) -> str:
    """The model's column for one part of a datetime column: ``<column>.<part>``."""
    return f"{column}.{part}"


def _micros(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif not isinstance(value, date):
        raise TypeError(type(value).__name__)
    moment = value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return (moment - _EPOCH) // _MICROSECOND


def parse(values: Sequence[Any]) -> np.ndarray:
    """ISO-8601 strings (``2024-05-31``, ``2024-05-31T14:30:00+02:00``, ``...Z``), Python
    dates and datetimes, or ``None`` as ``datetime64[us]`` in UTC, NaT where missing.

    Raises:
        BadDate: the first value that is none of these.
    """
    micros: list[int] = []
    for row, value in enumerate(values):
        try:
            found = _micros(value)
        except (ValueError, TypeError, OverflowError):
            raise BadDate(row) from None
        micros.append(_NAT if found is None else found)
    return np.array(micros, dtype=np.int64).view("datetime64[us]")


def _part(values: np.ndarray, part: str) -> np.ndarray:
    days = values.astype("datetime64[D]")
    compute: dict[str, Callable[[], np.ndarray]] = {
        "year": lambda: days.astype("datetime64[Y]").astype(np.int64) + 1970,
        "month": lambda: days.astype("datetime64[M]").astype(np.int64) % 12 + 1,
        "day": lambda: (days - days.astype("datetime64[M]")).astype(np.int64) + 1,
        # 1970-01-01 was a Thursday (3 when Monday is 0).
        "day_of_week": lambda: (days.astype(np.int64) + 3) % 7,
        "day_of_year": lambda: (days - days.astype("datetime64[Y]")).astype(np.int64) + 1,
        "hour": lambda: (values - days).astype("timedelta64[h]").astype(np.int64),
        "days": lambda: days.astype(np.int64),
    }
    return compute[part]().astype(np.float64)


def calendar(values: np.ndarray, parts: Sequence[str]) -> list[np.ndarray]:
    """The ``parts`` of ``datetime64`` values (UTC), each a float64 array, NaN where NaT."""
    values = values.astype("datetime64[us]")
    missing = np.isnat(values)
    out = []
    for part in parts:
        numbers = _part(values, part)
        numbers[missing] = np.nan
        out.append(numbers)
    return out


def part_columns(column: str, values: np.ndarray, parts: Sequence[str]) -> dict[str, np.ndarray]:
    """The model's columns (``<column>.<part>``) for one datetime column's values."""
    numbers = calendar(values, parts)
    return {feature_name(column, p): v for p, v in zip(parts, numbers, strict=True)}


def has_dates(signature: Signature) -> bool:
    """Whether the signature has a ``datetime`` column."""
    return any(spec.type == "datetime" for spec in signature.inputs)


def model_columns(signature: Signature) -> list[ColumnSpec]:
    """The columns the model itself takes: each ``datetime`` column replaced by its
    parts' float columns, in place."""
    out: list[ColumnSpec] = []
    for spec in signature.inputs:
        if spec.parts is None:
            out.append(spec)
        else:
            out.extend(
                ColumnSpec(name=feature_name(spec.name, p), type="float") for p in spec.parts
            )
    return out


def expand_arrays(signature: Signature, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Checked columns (``datetime64`` for a datetime column) as the model's columns."""
    out: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        if spec.parts is None:
            out[spec.name] = arrays[spec.name]
        else:
            out.update(part_columns(spec.name, arrays[spec.name], spec.parts))
    return out


def utc_values(series: pd.Series[Any]) -> np.ndarray:
    """A pandas column of dates or times (``datetime64``, with or without a time zone,
    ``date``/``datetime`` objects, or ISO-8601 strings) as ``datetime64[us]`` in UTC, NaT
    where missing."""
    import pandas as pd
    from pandas.api import types as ptypes

    if not ptypes.is_datetime64_any_dtype(series.dtype):
        return parse([None if pd.isna(v) else v for v in series.astype(object)])
    if getattr(series.dtype, "tz", None) is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return np.asarray(series.to_numpy(dtype="datetime64[us]"))


def expand_frame(frame: pd.DataFrame, signature: Signature) -> pd.DataFrame:
    """A prepared frame (the signature's columns) as the model's columns."""
    import pandas as pd

    if not has_dates(signature):
        return frame
    arrays = {s.name: frame[s.name].to_numpy() for s in signature.inputs if s.parts is None}
    arrays.update({s.name: utc_values(frame[s.name]) for s in signature.inputs if s.parts})
    return pd.DataFrame(expand_arrays(signature, arrays), index=frame.index)
