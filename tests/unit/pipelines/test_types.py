"""The value checks of pipeline types: every type has one, and each says what it expected."""

from __future__ import annotations

import math
from typing import Any

import pytest

from loopml.pipelines.types import ValueType, check_value

GOOD: dict[ValueType, Any] = {
    ValueType.STRING: "hello",
    ValueType.INTEGER: 3,
    ValueType.NUMBER: 2.5,
    ValueType.BOOLEAN: False,
    ValueType.OBJECT: {"a": [1]},
    ValueType.LIST: [1, "x"],
    ValueType.TABLE: "sales@3",
    ValueType.SOURCE: "SELECT 1",
    ValueType.DATASET: "churn_snap@2",
    ValueType.CODESET: "trainer@3",
    ValueType.MODEL: "churn/4",
    ValueType.RUN: "0" * 32,
    ValueType.METRICS: {"auc": 0.9, "n": 10},
    ValueType.FILES: ["a/b.txt"],
    ValueType.ANY: object(),
}


def test_every_type_has_a_check() -> None:
    assert set(GOOD) == set(ValueType)
    for kind, value in GOOD.items():
        assert check_value(kind, value) is None, kind


@pytest.mark.parametrize(
    ("kind", "value", "says"),
    [
        (ValueType.STRING, 3, "expected string (text), got int"),
        (ValueType.TABLE, "no spaces allowed", "expected a table"),
        (ValueType.RUN, "abc", "expected a training run id"),
        (ValueType.CODESET, "trainer@0", "expected a codeset such as"),
        (ValueType.SOURCE, "   ", "expected a table ('sales'"),
        (ValueType.INTEGER, True, "expected an integer, got True"),
        (ValueType.INTEGER, 1.0, "expected an integer"),
        (ValueType.NUMBER, math.inf, "expected a finite number, got inf"),
        (ValueType.NUMBER, False, "expected a finite number"),
        (ValueType.BOOLEAN, "true", "expected true or false"),
        (ValueType.METRICS, {"auc": "high"}, "expected metrics"),
        (ValueType.METRICS, {"auc": math.nan}, "expected metrics"),
        (ValueType.FILES, ["a", 1], "expected files"),
        (ValueType.OBJECT, [], "expected a mapping, got list"),
        (ValueType.LIST, {}, "expected a list, got dict"),
    ],
)
def test_a_wrong_value_says_what_was_expected(kind: ValueType, value: Any, says: str) -> None:
    problem = check_value(kind, value)
    assert problem is not None
    assert problem.startswith(says)
