"""What an AutoML search is asked (``SearchOptions``) and what it fills in a training
outcome (``Searched``): one pair of types for the tabular path and the text trainer's
embeddings method, so both honour the same options and report the same fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from loopml.core.errors import ValidationError

DEFAULT_BUDGET_S = 60.0
"""AutoML's wall-time budget unless one is given: ``loopml train --budget``,
``loopml.train_model(budget_s=)`` and ``SearchOptions`` share it."""
DEFAULT_MAX_MODEL_MB = 50.0
"""The largest model package AutoML picks unless told otherwise (issue 38: "the default
keeps a model under 50 MB"): a forest of deep trees on a large table can reach hundreds of
MB for a score a smaller model nearly matches, and the package is loaded by every replica."""


@dataclass(frozen=True)
class SearchOptions:
    """AutoML's options, as ``train`` and the text trainer's embeddings method take them.

    ``budget_s`` covers the whole training call (see ``loopml.train.service.train``); its
    bounds, with ``max_iter``'s, are checked where the search starts
    (``loopml.train.automl``), so custom training, which ignores them, is not refused for
    them. ``max_model_mb`` and ``max_predict_ms`` are refused here when not positive.
    ``linear_first`` puts the linear learner first and scores its default before the search
    (the text trainer's embeddings: dense, wide, few rows). ``bagging`` lets a
    cross-validated winner be its fold models averaged (``loopml.train.automl._bag``)
    instead of one refit on every row.
    """

    budget_s: float = DEFAULT_BUDGET_S
    metric: str | None = None
    seed: int = 0
    estimators: list[str] | None = None
    max_iter: int | None = None
    n_jobs: int | None = None
    max_model_mb: float | None = DEFAULT_MAX_MODEL_MB
    max_predict_ms: float | None = None
    keep_columns: tuple[str, ...] = ()
    linear_first: bool = False
    bagging: bool = False
    on: str = "local"
    ray_address: str | None = None

    def __post_init__(self) -> None:
        # A limit is refused where it is given (the CLI's option, the SDK's argument, a
        # pipeline step's param), before any run starts: no model fits a limit of 0.
        for name in ("max_model_mb", "max_predict_ms"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                positive = False
            else:
                positive = math.isfinite(value) and value > 0
            if not positive:
                raise ValidationError(
                    f"{name} must be a positive number, got {value!r}", details={"field": name}
                )


@dataclass(frozen=True)
class Searched:
    """The outcome's fields a search fills (their empty values when none ran)."""

    best_estimator: str | None = None
    best_score: float | None = None
    trials: int = 0
    used_columns: list[str] = field(default_factory=list)
    excluded_columns: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
