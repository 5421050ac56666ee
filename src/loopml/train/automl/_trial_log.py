"""Turns raw trials (the library defaults' and FLAML's) into ``Trial`` records."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from loopml.train.automl import _flaml
from loopml.train.automl._metrics import Direction, score_from_loss
from loopml.train.automl._types import Trial

TrialCallback = Callable[[Trial], None]


class TrialLog:
    """Records each raw trial as a ``Trial`` (with its estimated package size and one-row
    latency) and passes it to the callback."""

    def __init__(
        self,
        started: float,
        direction: Direction,
        on_trial: TrialCallback | None,
        size_mb: Callable[[str, dict[str, object]], float],
        predict_ms: Callable[[str, dict[str, object]], float] | None = None,
    ) -> None:
        self.trials: list[Trial] = []
        # The validation predictions that came with a trial (``RawTrial.predictions``),
        # by iteration: only those of each learner's best trial (``Trial.family``) are kept.
        self.predictions: dict[int, list[np.ndarray]] = {}
        self._kept: dict[str, Trial] = {}
        self._started = started
        # The same moment in Unix seconds, for trials that say when they ended elsewhere.
        self._epoch = time.time() - (time.perf_counter() - started)
        self._direction = direction
        self._on_trial = on_trial
        self._size_mb = size_mb
        self._predict_ms = predict_ms

    def estimates(self, estimator: str, config: dict[str, object]) -> tuple[float, float]:
        """A model's estimated package size (MB) and one-row latency (ms), as its trial's
        would be recorded."""
        latency = 0.0 if self._predict_ms is None else self._predict_ms(estimator, config)
        return round(self._size_mb(estimator, config), 4), round(latency, 5)

    def _improves(self, score: float, best: Trial | None, *, of_best: bool = True) -> bool:
        """Whether ``score`` beats ``best``'s best score so far (``of_best``) or its own."""
        if best is None:
            return True
        if not math.isfinite(score):
            return False
        than = best.best_score if of_best else best.score
        if not math.isfinite(than):
            return True
        return score > than if self._direction == "max" else score < than

    def _elapsed(self, raw: _flaml.RawTrial) -> float:
        """Seconds since the search started when the trial ended: by the node that ran it
        when it says (a Ray trial), else now."""
        if raw.ended:
            return max(raw.ended - self._epoch, 0.0)
        return time.perf_counter() - self._started

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
            elapsed_s=self._elapsed(raw),
            best_score=score if improved or best is None else best.best_score,
            best_estimator=raw.estimator if improved or best is None else best.best_estimator,
            improved=improved,
            source=raw.source,
            size_mb=round(self._size_mb(raw.estimator, raw.config), 4),
            predict_ms=0.0
            if self._predict_ms is None
            else round(self._predict_ms(raw.estimator, raw.config), 5),
            node=raw.node,
        )
        self.trials.append(trial)
        if raw.predictions is not None:
            kept = self._kept.get(trial.family)
            if kept is None or self._improves(score, kept, of_best=False):
                if kept is not None:
                    self.predictions.pop(kept.iteration, None)
                self.predictions[trial.iteration] = raw.predictions
                self._kept[trial.family] = trial
        if self._on_trial is not None:
            self._on_trial(trial)
