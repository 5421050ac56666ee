"""tests/waiting.py's ``eventually``: it returns what the condition found, and when the
condition never holds it fails saying what it waited for and what it saw."""

from __future__ import annotations

import itertools

import pytest

from tests.waiting import eventually


def test_returns_the_first_truthy_value() -> None:
    calls = itertools.count(1)
    found = eventually(lambda: [n] if (n := next(calls)) >= 3 else [], 30, "a third call")
    assert found == [3], f"expected the third call's value, got {found!r}"


def test_a_condition_that_never_holds_fails_with_what_and_the_last_value() -> None:
    with pytest.raises(AssertionError) as failed:
        eventually(lambda: 0, 0.2, "the answer to be 42", interval_s=0.01)
    message = str(failed.value)
    assert "the answer to be 42" in message, message
    assert "limit 0.2 s" in message, message
    assert "last value: 0" in message, message


def test_an_exception_is_retried_and_the_last_one_reported() -> None:
    def broken() -> bool:
        raise ConnectionError("refused")

    with pytest.raises(AssertionError) as failed:
        eventually(broken, 0.2, "a server", interval_s=0.01, describe=lambda: "log: port taken")
    message = str(failed.value)
    assert "last exception: ConnectionError('refused')" in message, message
    assert message.endswith("log: port taken"), message
    assert isinstance(failed.value.__cause__, ConnectionError), repr(failed.value.__cause__)


def test_a_condition_that_raises_then_holds_returns() -> None:
    calls = itertools.count(1)

    def flaky() -> int:
        if (n := next(calls)) < 3:
            raise ConnectionError(f"refused {n}")
        return n

    assert eventually(flaky, 30, "a third call", interval_s=0.01) == 3
