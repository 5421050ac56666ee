"""The run's clock: its deadline, and what the work after the search will take (the final
ensemble, the winner's refit, packaging and registration), which the search leaves room
for."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from loopml.core.errors import ValidationError
from loopml.train.automl import _bag, _costs, _ensemble, _warm
from loopml.train.automl._final import FINAL_FIT_SLACK
from loopml.train.automl._inputs import PreparedData
from loopml.train.automl._types import Trial

# Time kept back from the search on top of the best model's estimated refit (and
# packaging): assembling the pipeline, and a trial in flight when the budget runs out
# that ends a little late (a forest's fit cannot be stopped at the deadline).
RESERVE_SHARE = 0.03
RESERVE_MIN_S = 0.3


class Clock:
    """The run's deadline, and what the final phase of the best trial so far will take."""

    def __init__(
        self,
        started: float,
        budget_s: float,
        prep: PreparedData,
        method: str,
        packaging: bool,
        registering: bool = False,
        bagger: _bag.Bagger | None = None,
        loss_call_s: float = _costs.LOSS_CALL_S,
    ) -> None:
        self.started = started
        self.budget_s = budget_s
        self._rows = len(prep.codes)
        self._classes = prep.n_classes
        self._method = method
        self._packaging = packaging
        self._registering = registering
        self._floor = max(RESERVE_MIN_S, RESERVE_SHARE * budget_s)
        self._bagger = bagger
        self._loss_call_s = loss_call_s

    def bags(self, trial: Trial | None) -> bool:
        """Whether ``trial``, as the winner, is to be bagged (``_bag``): its bag fits the
        limits, and its fits and packaging the time left (with the final fit's slack).
        The search keeps that room while it holds it; a bag that no longer fits (the
        defaults took it) is dropped, and the search keeps room for a refit instead: on
        digits at 30 s, a bag of LightGBM's default (20 s) kept back from the 19.5 s left
        after it ended the search there, and the run at half its budget."""
        if self._bagger is None or not self._bagger.fits(trial):
            return False
        assert trial is not None
        return sum(self.bag_s(trial)) <= self.left() + FINAL_FIT_SLACK * self.budget_s

    def bag_s(self, trial: Trial) -> tuple[float, float]:
        """The estimated seconds of ``trial``'s bag: its fits, then its packaging (and
        registration)."""
        fit = _bag.fit_s(trial, self._rows)
        return fit, self.package_s_of(_costs.ENSEMBLE, _bag.bag_config(trial), fit)

    def package_s(self, trial: Trial | None) -> float:
        if trial is None:
            return 0.0
        return self.package_s_of(trial.estimator, trial.config)

    def reserve(self, trial: Trial | None) -> float:
        """What ``trial``, as the winner, needs after the search: its refit (its bag's fits
        when it is to be bagged), its packaging (and registration), and the floor."""
        if trial is None:
            return self._floor
        if self.bags(trial):
            return self._floor + sum(self.bag_s(trial))
        refit = _costs.refit_s(trial.train_time_s, trial.sample_size, self._rows, self._method)
        return self._floor + refit + self.package_s_of(trial.estimator, trial.config, refit)

    def ensemble_s(self, pool: list[Trial], search_rows: int, known: Collection[int]) -> float:
        """What an ensemble of ``pool`` will take: the validation predictions of the members
        whose trial gave none (``known``: those that did; the trial again, on every
        searched row), the greedy selection, each member's refit, and packaging."""
        if len(pool) < 2:
            return 0.0
        scored = sum(
            _costs.SAFETY * t.train_time_s * search_rows / max(t.sample_size, 1)
            for t in pool
            if t.iteration not in known
        )
        refit = sum(
            _costs.refit_s(t.train_time_s, t.sample_size, self._rows, self._method) for t in pool
        )
        select = self._loss_call_s * _ensemble.selection_calls(len(pool), self._method)
        config = _ensemble.member_config([(t, 1) for t in pool])
        before = scored + select + refit
        return self._floor + before + self.package_s_of(_costs.ENSEMBLE, config, before)

    def package_s_of(self, name: str, config: dict[str, Any], after_s: float = 0.0) -> float:
        """Packaging (and registering) ``name`` with ``config`` once ``after_s`` seconds of
        fitting are done: the libraries' import goes on in the background meanwhile, so
        only what is left of it then counts."""
        rows, classes = self._rows, self._classes
        register = _costs.register_s(name, config, rows, classes) if self._registering else 0.0
        if not self._packaging:
            return register
        import_s = max(0.0, _warm.import_left_s(_costs.PACKAGE_IMPORT_S) - after_s)
        return register + _costs.package_s(name, config, rows, classes, import_s=import_s)

    def left(self) -> float:
        return self.started + self.budget_s - time.perf_counter()

    def check_floor(self) -> None:
        """Refuse a budget that cannot hold even the final fit's fixed reserve."""
        floor = self.reserve(None)
        if self.budget_s <= floor:
            raise ValidationError(
                f"a budget of {self.budget_s:g} s is too small: the final fit alone needs "
                f"{floor:.1f} s",
                details={"budget_s": self.budget_s},
            )
