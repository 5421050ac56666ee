"""Turns raw trials (the library defaults' and FLAML's) into ``Trial`` records."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from loopml.train.automl import _flaml
from loopml.train.automl._metrics import Direction, score_from_loss
from loopml.train.automl._types import Trial

TrialCallback = Callable[[Trial], None]


class TrialLog:
    """Records each raw trial as a ``Trial`` (with its estimated package size) and passes it
    to the callback."""

    def __init__(
        self,
        started: float,
        direction: Direction,
        on_trial: TrialCallback | None,
        size_mb: Callable[[str, dict[str, object]], float],
    ) -> None:
        self.trials: list[Trial] = []
        self._started = started
        self._direction = direction
        self._on_trial = on_trial
        self._size_mb = size_mb

    def _improves(self, score: float, best: Trial | None) -> bool:
        if best is None:
            return True
        if not math.isfinite(score):
            return False
        if not math.isfinite(best.best_score):
            return True
        return score > best.best_score if self._direction == "max" else score < best.best_score

    def __call__(self, raw: _flaml.RawTrial) -> None:
        score = score_from_loss(raw.loss, self._direction)
        best = self.trials[-1] if self.trials else None
        improved = self._improves(score, best)
        trial = Trial(
            iteration=len(self.trials) + 1,
            estimator=raw.estimator,
            config=raw.config,
            score=score,
            train_time_s=raw.train_time_s,
            sample_size=raw.sample_size,
            elapsed_s=time.perf_counter() - self._started,
            best_score=score if improved or best is None else best.best_score,
            best_estimator=raw.estimator if improved or best is None else best.best_estimator,
            improved=improved,
            source=raw.source,
            size_mb=round(self._size_mb(raw.estimator, raw.config), 4),
        )
        self.trials.append(trial)
        if self._on_trial is not None:
            self._on_trial(trial)
