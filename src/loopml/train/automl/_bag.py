"""k-fold bagging of the winner: under cross-validation, the winner is fitted once on each
fold's training rows (the same folds its trials were scored on) and the fold models'
predictions are averaged, instead of one refit on every row.

Why: on small frames an average of fold models is steadier than one model on all rows.
The library defaults on the bench's five cross-validated data sets (digits, penguins,
fair, midwest, txhousing; their test rows), refit on every row against a 5-fold bag:
LightGBM's log loss on digits 0.0615 -> 0.0594, on penguins 0.2506 -> 0.1473; XGBoost's
on penguins 0.1074 -> 0.0457, its RMSE on txhousing 9,979 -> 9,616; better on 7 of 10,
worse at most 0.9 % (XGBoost's ROC AUC on midwest). AutoGluon's presets bag the same way.

Each fold model's validation score is the trial's own (it is the model that scored that
fold), so no validation row judges the bag against the refit: it is taken whenever it
fits, and it is the larger model. It fits when

- the trials were cross-validated (a holdout has no folds) and, for classes, stratified
  (every fold model then has every class, so their probabilities average column by
  column);
- the winner is a single model (not a blend);
- its estimates (``FOLDS`` copies of the winner, costed as an ensemble of them: package,
  one-row latency) fit ``max_model_mb`` and ``max_predict_ms``, and its package
  ``MAX_BAG_MB``;
- its fits (about the winner's trial time, which fitted the same folds) and packaging fit
  in the clock's time left, which the search keeps for it (``Clock.reserve``).

The bag is a scikit-learn ``VotingRegressor`` or soft ``VotingClassifier`` whose members
are the fold models, built fitted: skl2onnx exports it as one graph, as it does the
ensemble. A kept blend is not bagged: it averages models already, and its bag (every member
once a fold) is estimated from its members' trials, which took far longer than their fits:
at 60 s on txhousing the room kept for a bag of LightGBM x2 and a forest ended the run at
0.87 x its budget.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopml.train.automl import _costs
from loopml.train.automl._metrics import TaskKind
from loopml.train.automl._select import CostLimits
from loopml.train.automl._split import N_SPLITS, Validation
from loopml.train.automl._types import Trial

FOLDS = N_SPLITS
# The largest bag taken (its estimated package, MB), whatever ``max_model_mb`` allows. A
# bag is five models: on digits at 60 s LightGBM's bag scored 3.4 % better on the test
# rows than its refit (log loss 0.0594 against 0.0615) but made a 22.3 MB package of a
# 4.7 MB one, answered a row in 6.5 ms instead of 4.1, and its packaging took 8 s of the
# budget (37 trials searched instead of 69). The bags that gain most are of small models
# on small frames (penguins: 0.0296 against 0.0324, 0.5 MB): under this cap they are all
# taken, and a model that is already large is not made five times larger.
MAX_BAG_MB = 10.0


def possible(validation: Validation, kind: TaskKind) -> bool:
    """Whether this validation's folds can be bagged: cross-validation, stratified for
    classes."""
    if validation.method != "cv":
        return False
    if kind == "regression":
        return True
    from sklearn.model_selection import StratifiedKFold

    return isinstance(validation.splitter, StratifiedKFold)


def bag_config(trial: Trial) -> dict[str, Any]:
    """``trial``'s bag as an ensemble configuration (``_ensemble.member_config``'s shape):
    its model once a fold, which ``_costs`` estimates as it does an ensemble."""
    member = {"estimator": trial.estimator, "config": trial.config, "weight": 1}
    return {"members": [member] * FOLDS, _costs.BAGGED: FOLDS}


def fit_s(trial: Trial, rows: int) -> float:
    """The estimated seconds to fit ``trial``'s bag on ``rows`` rows: the ``FOLDS`` fits its
    cross-validated trial made, scaled to the rows."""
    return _costs.SAFETY * trial.train_time_s * rows / max(trial.sample_size, 1)


@dataclass(frozen=True)
class Bagger:
    """Whether a winner is bagged, and what its bag is estimated to cost.

    Attributes:
        enabled: bagging was asked for and the validation allows it (``possible``).
        limits: the run's limits, which the bag's estimates must fit.
        size_mb, predict_ms: the run's estimates of a learner and configuration.
    """

    enabled: bool
    limits: CostLimits
    size_mb: Callable[[str, dict[str, Any]], float]
    predict_ms: Callable[[str, dict[str, Any]], float]

    def estimates(self, trial: Trial) -> tuple[float, float]:
        """The bag's estimated package (MB) and one-row latency (ms)."""
        config = bag_config(trial)
        return self.size_mb(_costs.ENSEMBLE, config), self.predict_ms(_costs.ENSEMBLE, config)

    def fits(self, trial: Trial | None) -> bool:
        """Whether ``trial`` would be bagged, time aside: enabled, a single model (not a
        blend), and its bag's estimates within the limits."""
        if trial is None or not self.enabled or trial.estimator == _costs.ENSEMBLE:
            return False
        size, latency = self.estimates(trial)
        if size > min(MAX_BAG_MB, self.limits.max_model_mb or math.inf):
            return False
        return self.limits.max_predict_ms is None or latency <= self.limits.max_predict_ms


def _member_steps(steps: list[tuple[str, Any]]) -> Any:
    from sklearn.pipeline import Pipeline

    return Pipeline(steps) if len(steps) > 1 else steps[0][1]


def fit_bag(
    make_steps: Callable[[], list[tuple[str, Any]]],
    validation: Validation,
    kind: TaskKind,
    labels: np.ndarray,
) -> list[tuple[str, Any]]:
    """The bag's pipeline step ``[("model", Voting...)]``: ``make_steps()`` (fresh unfitted
    steps, ``[("scale", ...)?, ("model", ...)]``) fitted on each fold's training rows of
    ``validation``. ``labels`` are the target's own values (a classifier's ``classes_``);
    the folds' are their class codes, on which the members are fitted, as a
    ``VotingClassifier`` fits its own."""
    from sklearn.base import clone
    from sklearn.ensemble import VotingClassifier, VotingRegressor
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import LabelEncoder

    estimators: list[tuple[str, Any]] = []
    for fold, (x_fit, y_fit, _, _) in enumerate(validation.folds()):
        member = _member_steps(make_steps())
        with warnings.catch_warnings():
            # As in the search: a linear member may stop at its max_iter, as it did there.
            warnings.simplefilter("ignore", ConvergenceWarning)
            member.fit(x_fit, y_fit)
        estimators.append((f"fold{fold}", member))
    # skl2onnx reads the weights as an array (a list fails its export).
    votes = np.ones(len(estimators))
    # The parameters hold the members unfitted, as a fitted Voting estimator's do.
    unfitted = [(name, clone(est)) for name, est in estimators]
    voting: Any
    if kind == "regression":
        voting = VotingRegressor(unfitted, weights=votes)
    else:
        voting = VotingClassifier(unfitted, voting="soft", weights=votes, flatten_transform=False)
        voting.le_ = LabelEncoder().fit(labels)
        voting.classes_ = voting.le_.classes_
    # Only ``estimators_``, which prediction and skl2onnx read: ``named_estimators_`` (the
    # same models by name), or fitted members in the parameters, would have skops store
    # every member again (a bag of cancer's LightGBM default: 3.0 MB, 6.4 MB with both).
    voting.estimators_ = [est for _, est in estimators]
    return [("model", voting)]
