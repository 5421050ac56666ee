"""Small helpers shared by the built-ins."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from loopml.core.errors import ValidationError
from loopml.core.refs import ModelRef

M = TypeVar("M", bound=BaseModel)


def model_version(ref: str) -> tuple[str, int]:
    """``("churn", 4)`` from a pinned model reference ``churn/4``."""
    parsed = ModelRef.parse(ref)
    if parsed.version is None:
        raise ValidationError(f"expected a pinned model version such as 'churn/4', got {ref!r}")
    return parsed.name, parsed.version


def metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of ``values`` (a ``metrics`` output holds nothing else)."""
    found: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            found[key] = float(value)
    return found


def parse_model(cls: type[M], data: Any, what: str) -> M:
    """``cls`` from ``data``, or a ``ValidationError`` naming each problem."""
    try:
        return cls.model_validate(data)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or what}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ValidationError(f"invalid {what}: {problems}") from None
