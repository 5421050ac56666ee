"""Number types for request bodies whose JSON Schema and pydantic must agree."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, StrictInt


def integral(value: Any) -> Any:
    """``8617.0`` as ``8617``: JSON Schema counts a whole float as an integer, and a strict
    int field would refuse what the published schema accepts. Anything else is unchanged
    (``8617.5`` and ``"8617"`` are still refused by the strict check after it)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WholeInt = Annotated[StrictInt, BeforeValidator(integral)]
"""A strict integer that also takes a whole float (``3.0``), as JSON Schema's integer does."""
