"""Which trial wins: the best validation score among the models within the limits (package
size, one-row latency), and of those within ``TIE_SHARE`` of that score, the smallest
package."""

from __future__ import annotations

import math
from dataclasses import dataclass

from loopml.core.errors import ValidationError
from loopml.train.automl._metrics import Direction
from loopml.train.automl._types import Trial

# Scores this close to the best (relative) are a tie, which the smaller model wins: a
# 0.1 % better validation score is within the noise of one split, a 10 x larger package
# is not.
TIE_SHARE = 1e-3


@dataclass(frozen=True)
class CostLimits:
    """What a winner (or an ensemble member) may cost, by its trial's estimates: the
    package's size in MB and one row's latency on the model server in ms (``None``: no
    limit)."""

    max_model_mb: float | None = None
    max_predict_ms: float | None = None

    def fits(self, trial: Trial) -> bool:
        """Whether ``trial``'s estimated size and latency are within the limits."""
        return self.allows(trial.size_mb, trial.predict_ms)

    def allows(self, size_mb: float, predict_ms: float) -> bool:
        """Whether a model of this estimated size and latency is within the limits."""
        if self.max_model_mb is not None and size_mb > self.max_model_mb:
            return False
        return self.max_predict_ms is None or predict_ms <= self.max_predict_ms


NO_LIMITS = CostLimits()


def _better(a: float, b: float, direction: Direction) -> bool:
    return a > b if direction == "max" else a < b


def pick_winner(trials: list[Trial], direction: Direction, limits: CostLimits) -> Trial | None:
    """The winning trial, or ``None`` when no trial has a finite score within ``limits``."""
    allowed = [t for t in trials if math.isfinite(t.score) and limits.fits(t)]
    if not allowed:
        return None
    best = allowed[0]
    for trial in allowed[1:]:
        if _better(trial.score, best.score, direction):
            best = trial
    margin = TIE_SHARE * max(abs(best.score), 1e-12)
    near = [t for t in allowed if abs(t.score - best.score) <= margin]
    return min(near, key=lambda t: (t.size_mb, t.iteration))


def no_winner(trials: list[Trial], limits: CostLimits, budget_s: float) -> ValidationError:
    """The error for a run that has no winner, saying why."""
    finite = [t for t in trials if math.isfinite(t.score)]
    if finite and limits.max_model_mb is not None:
        smallest = min(t.size_mb for t in finite)
        if smallest > limits.max_model_mb:
            return ValidationError(
                f"no model of the {len(finite)} trials fits in {limits.max_model_mb:g} MB (the "
                f"smallest would take about {smallest:.1f} MB): raise max_model_mb, or search "
                "smaller learners (lgbm, the linear one)",
                details={"max_model_mb": limits.max_model_mb, "smallest_mb": round(smallest, 3)},
            )
    fastest = min((t.predict_ms for t in finite), default=0.0)
    if finite and limits.max_predict_ms is not None and fastest > limits.max_predict_ms:
        return ValidationError(
            f"no model of the {len(finite)} trials answers one row within "
            f"{limits.max_predict_ms:g} ms (max_predict_ms; the fastest would take about "
            f"{fastest:.3f} ms on the model server, estimated): raise max_predict_ms, or "
            "give the model fewer columns (most of a small model's latency is its inputs)",
            details={"max_predict_ms": limits.max_predict_ms, "fastest_ms": round(fastest, 4)},
        )
    if finite:
        # Each limit alone leaves a trial, both together none.
        return ValidationError(
            f"no model of the {len(finite)} trials fits both max_model_mb "
            f"{limits.max_model_mb:g} and max_predict_ms {limits.max_predict_ms:g}: raise one",
            details={"max_model_mb": limits.max_model_mb, "max_predict_ms": limits.max_predict_ms},
        )
    return ValidationError(
        f"no trial finished within the budget of {budget_s:g} s: raise the budget",
        details={"budget_s": budget_s},
    )
