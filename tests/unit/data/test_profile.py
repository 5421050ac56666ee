"""Column profiles checked against NumPy on known data: nulls, NaN and infinities, text,
booleans, dates and timestamps."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pyarrow as pa
import pytest

from loopml.core.datasets import HISTOGRAM_BINS, MAX_CATEGORY_CHARS, QUANTILES, TOP_K
from loopml.data.profile import profile_column, profile_table


def test_floats_with_nulls_nan_and_infinities_match_numpy() -> None:
    rng = np.random.default_rng(11)
    finite = rng.normal(10, 3, size=997)
    values: list[float | None] = [*finite.tolist(), float("nan"), float("inf"), float("-inf")]
    values += [None] * 3
    column = profile_column("x", pa.array(values))
    assert (column.kind, column.type, column.count, column.nulls) == ("numeric", "double", 1000, 3)
    assert column.null_share == pytest.approx(3 / 1003)
    assert (column.nan, column.pos_inf, column.neg_inf) == (1, 1, 1)
    assert column.min == finite.min()
    assert column.max == finite.max()
    assert column.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert column.std == pytest.approx(finite.std(), rel=1e-12)
    assert column.quantiles is not None
    assert list(column.quantiles) == [label for label, _ in QUANTILES]
    expected = np.quantile(finite, [q for _, q in QUANTILES])
    assert list(column.quantiles.values()) == pytest.approx(expected.tolist(), rel=1e-12)
    counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
    assert column.histogram is not None
    assert column.histogram.counts == counts.tolist()
    assert column.histogram.edges == pytest.approx(edges.tolist(), rel=1e-12)
    assert sum(column.histogram.counts) == 997
    assert (column.distinct, column.top) == (None, None)


def test_integers_are_exact_and_low_cardinality_gets_top_values() -> None:
    big = pa.array([2**62 + 1, 5, None, 5, 7], pa.int64())
    column = profile_column("big", big)
    assert (column.min, column.max) == (5, 2**62 + 1)
    assert column.distinct == 3
    assert column.top is not None
    assert [(t.value, t.count) for t in column.top] == [(5, 2), (7, 1), (2**62 + 1, 1)]
    assert column.other == 0
    widest = profile_column("u", pa.array([2**64 - 1, 0], pa.uint64()))
    assert (widest.min, widest.max, widest.distinct) == (0, 2**64 - 1, 2)
    many = profile_column("many", pa.array(np.arange(TOP_K + 1)))
    assert (many.distinct, many.top) == (TOP_K + 1, None)
    assert many.mean == pytest.approx(TOP_K / 2)


def test_decimals_and_durations_are_numeric() -> None:
    money = profile_column(
        "m", pa.array([decimal.Decimal("1.25"), decimal.Decimal("-2.50")], pa.decimal128(6, 2))
    )
    assert (money.kind, money.min, money.max, money.mean) == ("numeric", -2.5, 1.25, -0.625)
    waits = profile_column("w", pa.array([1000, 3000, None], pa.duration("ms")))
    assert (waits.kind, waits.min, waits.max, waits.nulls) == ("numeric", 1000.0, 3000.0, 1)


def test_text_top_values_are_ordered_and_the_rest_is_other() -> None:
    values = ["b"] * 5 + ["a"] * 5 + ["c"] * 3 + [f"v{i:02d}" for i in range(30)] + [None] * 2
    column = profile_column("s", pa.array(values))
    assert (column.kind, column.count, column.nulls, column.distinct) == (
        "categorical",
        43,
        2,
        33,
    )
    assert column.top is not None
    assert len(column.top) == TOP_K
    # Most frequent first, ties by value: the same list every time.
    assert [(t.value, t.count) for t in column.top[:4]] == [
        ("a", 5),
        ("b", 5),
        ("c", 3),
        ("v00", 1),
    ]
    assert column.other == 43 - sum(t.count for t in column.top) == 13
    assert (column.min, column.mean, column.histogram) == (None, None, None)


def test_long_categories_are_cut() -> None:
    column = profile_column("s", pa.array(["x" * 1000, "x" * 1000, "y"]))
    assert column.top is not None
    assert column.top[0].value == "x" * MAX_CATEGORY_CHARS
    assert column.top[0].count == 2


def test_booleans_count_true_and_false() -> None:
    column = profile_column("b", pa.array([True, False, True, None, True]))
    assert column.kind == "categorical"
    assert column.distinct == 2
    assert column.top is not None
    assert [(t.value, t.count) for t in column.top] == [(True, 3), (False, 1)]
    assert type(column.top[0].value) is bool


def test_dates_and_timestamps_record_their_range() -> None:
    days = profile_column("d", pa.array([dt.date(2024, 3, 1), None, dt.date(2023, 1, 31)]))
    assert (days.kind, days.min, days.max, days.nulls) == (
        "temporal",
        "2023-01-31",
        "2024-03-01",
        1,
    )
    times = pa.array(
        [dt.datetime(2024, 1, 1, 8, 30), dt.datetime(2020, 5, 5)], pa.timestamp("us", tz="UTC")
    )
    stamped = profile_column("t", times)
    assert (stamped.min, stamped.max) == ("2020-05-05T00:00:00+00:00", "2024-01-01T08:30:00+00:00")


def test_empty_all_null_and_constant_columns() -> None:
    empty = profile_column("e", pa.array([], pa.float64()))
    assert (empty.count, empty.null_share, empty.min, empty.histogram) == (0, 0.0, None, None)
    nulls = profile_column("n", pa.array([None, None], pa.float64()))
    assert (nulls.nulls, nulls.null_share, nulls.mean) == (2, 1.0, None)
    only_nan = profile_column("nan", pa.array([float("nan")] * 3))
    assert (only_nan.nan, only_nan.count, only_nan.min, only_nan.quantiles) == (3, 3, None, None)
    constant = profile_column("c", pa.array([2.0, 2.0]))
    assert (constant.min, constant.max, constant.std) == (2.0, 2.0, 0.0)
    assert constant.histogram is not None
    assert sum(constant.histogram.counts) == 2
    null_type = profile_column("z", pa.nulls(3))
    assert (null_type.kind, null_type.nulls, null_type.count) == ("other", 3, 0)


def test_a_table_profile_is_json_without_nan() -> None:
    table = pa.table(
        {
            "x": [1.0, float("nan"), None],
            "s": ["a", None, "a"],
            "b": [b"\x00", b"\x01", None],
        }
    )
    profile = profile_table(table)
    assert profile.rows == 3
    assert [c.name for c in profile.columns] == ["x", "s", "b"]
    assert profile.column("b").distinct == 2
    text = profile.model_dump_json()
    assert "NaN" not in text
    assert "Infinity" not in text
    assert type(profile).model_validate_json(text) == profile
