"""The final ensemble's turn, and how long the search may still run around it.

The search keeps room for the ensemble of the best model of each learner so far (or for
the best model alone, whichever takes longer). When the clock nears that room (no
learner's next trial would fit before it), the ensemble is decided there and then, between
two trials, inside the search: a refused ensemble (or one with too few members) hands its
room back, and the search goes on until only the winner's refit and packaging are left.
Deciding it after the search instead left that room unused whenever the blend was
refused: runs ended at 0.48-0.75 x their budget (issue 38). A search that ends first
(``max_iter``, an exhausted space) has the ensemble decided after it.
"""

from __future__ import annotations

import time
from typing import Any

from loopml.train.automl import _ensemble, _flaml
from loopml.train.automl._clock import Clock
from loopml.train.automl._final import FINAL_FIT_SLACK
from loopml.train.automl._metrics import Direction, TaskKind, score_to_loss
from loopml.train.automl._select import CostLimits, pick_winner
from loopml.train.automl._split import Validation
from loopml.train.automl._trial_log import TrialLog
from loopml.train.automl._types import Trial


class EnsembleTurn:
    """The final ensemble, tried at most once, and the search's time left around it.

    Attributes:
        done: whether the ensemble has been decided (tried, or found impossible).
        in_search: whether it was decided inside the search (the search then resumed).
        summary: the blend tried (``Blend.summary``, with when it was decided, in seconds
            since the run's start, and whether inside the search), kept or not; ``None``
            when none was made.
        seconds: the time deciding it took.
    """

    def __init__(
        self,
        validation: Validation,
        log: TrialLog,
        clock: Clock,
        *,
        kind: TaskKind,
        metric: str,
        direction: Direction,
        n_jobs: int,
        limits: CostLimits,
    ) -> None:
        self._validation = validation
        self._log = log
        self._clock = clock
        self._kind = kind
        self._metric = metric
        self._direction = direction
        self._n_jobs = n_jobs
        self._limits = limits
        self.done = False
        self.in_search = False
        self.summary: dict[str, Any] | None = None
        self.seconds = 0.0

    def winner(self) -> Trial | None:
        return pick_winner(self._log.trials, self._direction, self._limits)

    def _room(self) -> tuple[float, int]:
        """The ensemble's room (0 once decided) and the size of its pool."""
        if self.done:
            return 0.0, 0
        pool = _ensemble.candidates(self._log.trials, self._direction, self._limits)
        rows = len(self._validation.labels)
        return self._clock.ensemble_s(pool, rows, self._log.predictions), len(pool)

    def search_left(self) -> float:
        """The seconds the search may still take; called after every trial. When the clock
        nears the ensemble's room, so close that no learner's next trial would fit before
        it, the ensemble is decided first (``take``)."""
        single = self._clock.reserve(self.winner())
        room, pool = self._room()
        left = self._clock.left() - max(single, room)
        if pool < 2 or left > self._next_trial_s():
            return left
        self.take(in_search=True)
        return self._clock.left() - self._clock.reserve(self.winner())

    def _next_trial_s(self) -> float:
        """The shortest time a learner's best search trial took (FLAML's
        ``time2eval_best``). FLAML starts no trial of a learner whose best took longer than
        the time it has left, and ends the search when no learner's does: deciding the
        ensemble only at its room's edge let the search end first, the ensemble was then
        decided after it, and a refused one's room went unused (fair at 60 s: 0.86 x)."""
        best: dict[str, Trial] = {}
        for trial in self._log.trials:
            if trial.source != "search":
                continue
            held = best.get(trial.estimator)
            if held is None or score_to_loss(trial.score, self._direction) < score_to_loss(
                held.score, self._direction
            ):
                best[trial.estimator] = trial
        return min((t.train_time_s for t in best.values()), default=0.0)

    def spare(self) -> float:
        """What the clock leaves beyond the work after the search (the ensemble's room
        while undecided): the time a search that ended on its own did not use."""
        return self._clock.left() - max(self._clock.reserve(self.winner()), self._room()[0])

    def take(self, *, in_search: bool = False) -> None:
        """Decide the ensemble now, unless it was decided already."""
        if self.done:
            return
        self.done = True
        self.in_search = in_search
        began = time.perf_counter()
        best = self.winner()
        tried = None if best is None else self._try(best)
        self.seconds = time.perf_counter() - began
        if tried is not None:
            at_s = round(began - self._clock.started, 3)
            self.summary = tried | {"decided_at_s": at_s, "in_search": in_search}

    def _fits(self, members: list[Trial]) -> bool:
        """Whether a blend of ``members`` would be within the limits (its estimates)."""
        config = _ensemble.member_config([(t, 1) for t in members])
        return self._limits.allows(*self._log.estimates(_ensemble.ESTIMATOR, config))

    def _try(self, best: Trial) -> dict[str, Any] | None:
        """Blend the best model of each learner, when the time left allows it, and record
        the blend as a trial (``source`` ``ensemble``) when its gain over the best single
        model is clear of the folds' spread (``Blend.clear_gain``); the winner is then
        picked among all trials as usual, so the blend wins only by more than the tie
        share. Returns the blend's summary, kept or not; ``None`` when none was made."""
        log, clock = self._log, self._clock
        pool = _ensemble.candidates(log.trials, self._direction, self._limits)
        rows = len(self._validation.labels)
        allowed = clock.left() + FINAL_FIT_SLACK * clock.budget_s
        while len(pool) >= 2 and clock.ensemble_s(pool, rows, log.predictions) > allowed:
            pool = pool[:-1]
        if len(pool) < 2:
            return None
        # Stop fitting members while the best single model can still be refit and packaged.
        deadline = time.perf_counter() + allowed - clock.reserve(best)
        found = _ensemble.blend(
            pool,
            self._validation,
            kind=self._kind,
            metric=self._metric,
            n_jobs=self._n_jobs,
            deadline=deadline,
            known=log.predictions,
            fits=self._fits,
        )
        if found is None or len(found.members) < 2:
            return None
        if found.clear_gain:
            members = [t for t, _ in found.members]
            fit_s = sum(t.train_time_s * rows / max(t.sample_size, 1) for t in members)
            log(
                _flaml.RawTrial(
                    estimator=_ensemble.ESTIMATOR,
                    config=found.config,
                    loss=found.loss,
                    train_time_s=fit_s,
                    sample_size=rows,
                    source="ensemble",
                )
            )
        return found.summary()
