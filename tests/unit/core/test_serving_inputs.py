"""The rule that decides whether a canary or shadow can take its primary's requests."""

from __future__ import annotations

from typing import Any

from loopml.core.serving_inputs import input_mismatch


def _sig(*columns: tuple[str, str]) -> dict[str, Any]:
    return {"inputs": [{"name": n, "type": t} for n, t in columns], "task": "regression"}


def test_the_same_inputs_or_a_wider_type_are_compatible() -> None:
    primary = _sig(("a", "integer"), ("b", "string"))
    assert input_mismatch(primary, _sig(("a", "integer"), ("b", "string"))) == []
    assert input_mismatch(primary, _sig(("a", "float"), ("b", "string"))) == []
    assert input_mismatch(primary, {}) == []  # no recorded signature: not judged
    assert input_mismatch({}, primary) == []


def test_each_difference_is_named() -> None:
    primary = _sig(("a", "float"), ("b", "string"), ("c", "boolean"))
    assert input_mismatch(primary, _sig(("a", "integer"), ("b", "string"), ("d", "float"))) == [
        "it needs 'd', which the primary's requests lack",
        "it refuses 'c', which the primary's requests carry",
        "types differ: 'a' is integer (the primary's is float)",
    ]
    assert input_mismatch(primary, _sig(("b", "string"), ("a", "float"), ("c", "boolean"))) == [
        "the inputs come in another order ('b', 'a', 'c' against the primary's 'a', 'b', 'c'), "
        "so rows sent as arrays would be misread"
    ]
