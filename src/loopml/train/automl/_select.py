"""Which trial wins: the best validation score among the models that fit the size limit,
and of those within ``TIE_SHARE`` of that score, the smallest package."""

from __future__ import annotations

import math

from loopml.core.errors import ValidationError
from loopml.train.automl._metrics import Direction
from loopml.train.automl._types import Trial

# Scores this close to the best (relative) are a tie, which the smaller model wins: a
# 0.1 % better validation score is within the noise of one split, a 10 x larger package
# is not.
TIE_SHARE = 1e-3


def _better(a: float, b: float, direction: Direction) -> bool:
    return a > b if direction == "max" else a < b


def pick_winner(
    trials: list[Trial], direction: Direction, max_model_mb: float | None
) -> Trial | None:
    """The winning trial, or ``None`` when no trial has a finite score under the limit."""
    allowed = [
        t
        for t in trials
        if math.isfinite(t.score) and (max_model_mb is None or t.size_mb <= max_model_mb)
    ]
    if not allowed:
        return None
    best = allowed[0]
    for trial in allowed[1:]:
        if _better(trial.score, best.score, direction):
            best = trial
    margin = TIE_SHARE * max(abs(best.score), 1e-12)
    near = [t for t in allowed if abs(t.score - best.score) <= margin]
    return min(near, key=lambda t: (t.size_mb, t.iteration))


def no_winner(trials: list[Trial], max_model_mb: float | None, budget_s: float) -> ValidationError:
    """The error for a run that has no winner, saying why."""
    finite = [t for t in trials if math.isfinite(t.score)]
    if finite and max_model_mb is not None:
        smallest = min(t.size_mb for t in finite)
        return ValidationError(
            f"no model of the {len(finite)} trials fits in {max_model_mb:g} MB (the smallest "
            f"would take about {smallest:.1f} MB): raise max_model_mb, or search smaller "
            "learners (lgbm, the linear one)",
            details={"max_model_mb": max_model_mb, "smallest_mb": round(smallest, 3)},
        )
    return ValidationError(
        f"no trial finished within the budget of {budget_s:g} s: raise the budget",
        details={"budget_s": budget_s},
    )
