"""The all-number fast path of ``/predict`` instances: the same arrays as the per-column
path where it applies, and the per-column path's precise errors where it does not."""

from __future__ import annotations

import numpy as np
import pytest

from loopml.core.errors import ValidationError
from loopml.packaging import ColumnSpec, Signature
from loopml.packaging import columns as _columns

SIGNATURE = Signature(
    inputs=[
        ColumnSpec(name="a", type="float"),
        ColumnSpec(name="b", type="integer"),
        ColumnSpec(name="c", type="float"),
    ],
    outputs=[ColumnSpec(name="y", type="float")],
    task="regression",
)


def test_records_of_numbers_become_one_matrix_equal_to_the_columns() -> None:
    records = [{"a": 1.5, "b": 2, "c": None}, {"c": 3, "b": 4.0, "a": -1}]

    matrix = _columns.numeric_matrix(SIGNATURE, records, max_rows=10)

    assert matrix is not None
    assert matrix.shape == (3, 2)
    assert matrix.flags.c_contiguous
    slow = _columns.from_instances(SIGNATURE, records, max_rows=10)
    for row, name in zip(matrix, ["a", "b", "c"], strict=True):
        np.testing.assert_array_equal(row, slow[name])


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"a": 1, "b": 2}], "missing column"),
        ([{"a": 1, "b": 2, "c": 3, "d": 4}], "unknown column"),
        ([{"a": "1", "b": 2, "c": 3}], "row 0 has the string '1'"),
        ([{"a": 1, "b": 2.5, "c": 3}], "integers have no fraction"),
        ([{"a": True, "b": 2, "c": 3}], "row 0 has true"),
        ([{"a": 1, "b": 2, "c": 3}, [1, 2, 3]], "instance 1 is an array"),
    ],
)
def test_anything_else_falls_back_to_the_precise_errors(
    records: list[object], message: str
) -> None:
    assert _columns.numeric_matrix(SIGNATURE, records, max_rows=10) is None
    with pytest.raises(ValidationError, match=message):
        _columns.from_instances(SIGNATURE, records, max_rows=10)


def test_too_many_rows_fall_back_to_the_limit_error() -> None:
    records = [{"a": 1, "b": 2, "c": 3}] * 3

    assert _columns.numeric_matrix(SIGNATURE, records, max_rows=2) is None
    with pytest.raises(ValidationError, match="more than the limit of 2"):
        _columns.from_instances(SIGNATURE, records, max_rows=2)


def test_extra_columns_are_dropped_when_asked_on_both_paths() -> None:
    records = [{"a": 1, "b": 2, "c": 3, "label": 1}, {"a": 4, "b": 5, "c": 6, "label": 0}]

    assert _columns.numeric_matrix(SIGNATURE, records, max_rows=10) is None
    matrix = _columns.numeric_matrix(SIGNATURE, records, max_rows=10, ignore_extra=True)
    assert matrix is not None
    np.testing.assert_array_equal(matrix, [[1, 4], [2, 5], [3, 6]])
    text = [{**r, "a": None, "note": "x"} for r in records]
    slow = _columns.from_instances(SIGNATURE, text, max_rows=10, ignore_extra=True)
    assert sorted(slow) == ["a", "b", "c"]
    with pytest.raises(ValidationError, match='send "extra": "ignore"'):
        _columns.from_instances(SIGNATURE, text, max_rows=10)
    with pytest.raises(ValidationError, match="missing column"):
        _columns.from_instances(SIGNATURE, [{"a": 1, "x": 2}], max_rows=10, ignore_extra=True)
