"""Argument checks shared by the repository modules."""

from __future__ import annotations

from loopml.core.errors import ValidationError

MAX_LIMIT = 1000


def check_limit(limit: int) -> int:
    """Return ``limit`` if it is a page size between 1 and ``MAX_LIMIT``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(
            f"invalid limit {limit!r}: expected an integer from 1 to {MAX_LIMIT}",
            details={"field": "limit", "min": 1, "max": MAX_LIMIT},
        )
    return limit


def check_text(field: str, value: str, *, max_length: int, allow_empty: bool = False) -> str:
    """Return ``value`` if it is a string of at most ``max_length`` characters."""
    if not isinstance(value, str) or len(value) > max_length or (not value and not allow_empty):
        shown = repr(value)[:80]
        need = "a string" if allow_empty else "a non-empty string"
        raise ValidationError(
            f"invalid {field} {shown}: expected {need} of at most {max_length} characters",
            details={"field": field, "max_length": max_length},
        )
    return value


def check_actor(actor: str) -> str:
    """Return ``actor`` if it is a non-empty string of at most 200 characters."""
    return check_text("actor", actor, max_length=200)
