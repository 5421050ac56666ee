"""The regression portfolio: LightGBM configurations scored after the library defaults,
each boosted at a lower learning rate until its validation loss stops improving.

FLAML's search changes ``n_estimators`` like any other hyperparameter, so under a short
budget its LightGBM trials stop at a learning rate and a tree count chosen apart; the
trees a rate needs are found in one fit by early stopping instead (AutoGluon's LightGBM
models are boosted so: issue 53). Each configuration is fitted on each fold's training
rows and stops ``PATIENCE`` rounds after its loss on the fold's validation rows last
improved; its trial records the mean best round as ``n_estimators``, which the refit on
every row grows, and its validation predictions, which the final ensemble blends without
fitting it again. The configurations are two of AutoGluon's LightGBM models, at a rate of
0.05: the default's 31 leaves, and a large one of 128 leaves. (Its third, extra trees, is
left out: it took 14-17 default trials where these take 5-7.5, and on scikit-learn's
diabetes its ONNX graph answered one test row of 111 0.4 % off the model's.) Their trials
have the source ``portfolio``: each is a candidate of the ensemble of its own
(``Trial.family``), beside the best trial of each learner.

The rounds stop at the trial's deadline too, so the portfolio takes at most
``PORTFOLIO_SHARE`` of the budget; a configuration starts only when its estimated time
(``COST``) fits in what is left of that share. Its validation score is slightly flattered
(the rows that stopped the rounds score them); the number of rounds is one parameter,
chosen on thousands of rows. Only for regression: the classifiers are scored as before.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from loopml.train.automl import _flaml
from loopml.train.automl._clock import Clock
from loopml.train.automl._ensemble import fold_loss
from loopml.train.automl._metrics import Direction, TaskKind
from loopml.train.automl._select import CostLimits, pick_winner
from loopml.train.automl._split import Validation
from loopml.train.automl._trial_log import TrialLog
from loopml.train.automl._types import Trial

PORTFOLIO = "portfolio"
# FLAML's names (``final_steps`` builds them as FLAML does).
CONFIGS: dict[str, dict[str, Any]] = {
    "lgbm_slow": {"learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20},
    "lgbm_large": {
        "learning_rate": 0.05,
        "num_leaves": 128,
        "min_child_samples": 3,
        "colsample_bytree": 0.9,
    },
}
"""The portfolio, in the order it is scored (the cheapest and strongest alone first)."""
# Each configuration's time, in LightGBM default trials on the same rows (100 trees at a
# rate of 0.1): measured on diamonds' holdout and bikeshare's 5 folds, one thread: 5 and
# 6.8 for the slow one, 5.5 and 7.5 for the large one.
COST = {"lgbm_slow": 5.0, "lgbm_large": 5.5}
PATIENCE = 50
MAX_ROUNDS = 5000
PORTFOLIO_SHARE = 0.5
# The portfolio's metrics: those LightGBM's early stopping can watch, by FLAML's name.
_WATCHED = {"rmse": "l2", "mse": "l2", "r2": "l2", "mae": "l1"}


def applies(kind: TaskKind, metric: str, names: list[str], all_learners: bool) -> bool:
    """Whether the portfolio is scored: a regression on a metric early stopping can watch,
    with LightGBM among the learners and no learners named by the caller."""
    return kind == "regression" and metric in _WATCHED and all_learners and "lgbm" in names


def _deadline_callback(deadline: float) -> Callable[[Any], None]:
    """A LightGBM callback that ends the boosting at ``deadline`` (``time.perf_counter``),
    keeping the rounds so far."""
    from lightgbm.callback import EarlyStopException

    def stop(env: Any) -> None:
        if time.perf_counter() >= deadline:
            raise EarlyStopException(env.iteration, env.evaluation_result_list)

    return stop


def _validation_rows(model: Any, x_val: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
    """The validation rows as ``fit`` takes them: ``eval_X``/``eval_y`` where LightGBM has
    them (4.6 on; its ``eval_set`` then warns that it is deprecated, and a filter against
    that warning is not safe while another thread changes the filters: the packaging
    libraries' import runs beside the search), else ``eval_set`` (4.3, the floor)."""
    if "eval_X" in inspect.signature(model.fit).parameters:
        return {"eval_X": x_val, "eval_y": y_val}
    return {"eval_set": [(x_val, y_val)]}


def _fit_fold(
    model: Any, fold: tuple[np.ndarray, ...], metric: str, deadline: float
) -> tuple[np.ndarray, int, int]:
    """``model`` boosted on the fold's training rows until its validation loss stops
    improving (or ``deadline``): its predictions on the validation rows, its best round,
    and the leaves of its trees up to that round."""
    import lightgbm

    x_fit, y_fit, x_val, y_val = fold
    model.set_params(metric=_WATCHED[metric])
    model.fit(
        x_fit,
        y_fit,
        **_validation_rows(model, x_val, y_val),
        callbacks=[
            lightgbm.early_stopping(PATIENCE, first_metric_only=True, verbose=False),
            _deadline_callback(deadline),
        ],
    )
    best = int(model.best_iteration_ or model.n_estimators)
    dump = model.booster_.dump_model(num_iteration=best)
    leaves = sum(int(tree["num_leaves"]) for tree in dump["tree_info"])
    return np.asarray(model.predict(x_val), dtype=np.float64), best, leaves


def score_config(
    name: str,
    validation: Validation,
    *,
    metric: str,
    n_jobs: int,
    deadline: float,
) -> _flaml.RawTrial | None:
    """Fit ``CONFIGS[name]`` on each fold with early stopping and return its trial (its mean
    validation loss, the mean best round as ``n_estimators``); ``None`` when a fold stopped
    at ``deadline`` before its first round. Each fold may run to an equal share of the time
    left before ``deadline``."""
    config = CONFIGS[name] | {"n_estimators": MAX_ROUNDS}
    folds = list(validation.folds())
    started = time.perf_counter()
    losses, predictions, rounds, per_tree = [], [], [], 0.0
    for i, fold in enumerate(folds):
        now = time.perf_counter()
        steps = _flaml.final_steps(
            "lgbm", config, "regression", n_jobs=n_jobs, categorical=validation.categorical
        )
        predicted, best, leaves = _fit_fold(
            steps[-1][1], fold, metric, now + (deadline - now) / (len(folds) - i)
        )
        if best < 1:
            return None
        losses.append(fold_loss(metric, "regression", predicted, fold[3]))
        predictions.append(predicted)
        rounds.append(best)
        per_tree = max(per_tree, leaves / best)
    trees = max(1, round(float(np.mean(rounds))))
    # The refit's nodes: as many trees as the mean best round, of the most leaves a tree
    # any fold had, scaled to every row (a tree grows no further than its leaf cap).
    scale = len(validation.labels) / len(folds[0][1])
    leaves_cap = float(config["num_leaves"])
    nodes = trees * (2 * min(scale * per_tree, leaves_cap) - 1)
    return _flaml.RawTrial(
        estimator="lgbm",
        config=config | {"n_estimators": trees, _flaml.MEASURED_NODES: round(nodes)},
        loss=float(np.mean(losses)),
        train_time_s=time.perf_counter() - started,
        sample_size=len(validation.labels),
        source=PORTFOLIO,
        predictions=predictions,
    )


def score_portfolio(
    validation: Validation,
    *,
    metric: str,
    n_jobs: int,
    seconds: Callable[[], float],
    on_trial: Callable[[_flaml.RawTrial], None],
    count: int | None = None,
    default_s: float = 0.0,
) -> int:
    """Score the portfolio in order, each configuration whose estimated time (``COST``
    times the LightGBM default's trial, ``default_s``, as the trials before it ran) fits in
    ``seconds()``, the time the portfolio may still take; ``count`` caps how many
    (``max_iter``'s share). Returns how many were scored."""
    scored, unit = 0, default_s
    for name in list(CONFIGS)[: count if count is not None else None]:
        left = seconds()
        if left <= 0 or left < COST[name] * unit:
            continue
        raw = score_config(
            name,
            validation,
            metric=metric,
            n_jobs=n_jobs,
            deadline=time.perf_counter() + left,
        )
        if raw is None or not math.isfinite(raw.loss):
            continue
        on_trial(raw)
        # The machine's pace as the last trial found it, in the default's trials.
        scored, unit = scored + 1, raw.train_time_s / COST[name]
    return scored


def portfolio_seconds(clock: Clock, winner: Callable[[], Trial | None], capped: bool) -> float:
    """What the portfolio may still take: the clock's time left beside the best trial's
    reserve (its refit and packaging), within ``PORTFOLIO_SHARE`` of the budget unless the
    trials are ``capped`` (``max_iter``: the same trials whatever the machine's speed)."""
    left = clock.left() - clock.reserve(winner())
    if capped:
        return left
    share = PORTFOLIO_SHARE * clock.budget_s - (time.perf_counter() - clock.started)
    return min(left, share)


def score_before_search(
    validation: Validation,
    log: TrialLog,
    clock: Clock,
    metric: str,
    direction: Direction,
    limits: CostLimits,
    n_jobs: int,
    search_iter: int | None,
) -> int | None:
    """Score the portfolio in what the clock leaves it (``portfolio_seconds``), after the
    library defaults; returns what is left of ``max_iter`` (``search_iter``) for the
    search."""

    def winner() -> Trial | None:
        return pick_winner(log.trials, direction, limits)

    scored = score_portfolio(
        validation,
        metric=metric,
        n_jobs=n_jobs,
        seconds=lambda: portfolio_seconds(clock, winner, search_iter is not None),
        on_trial=log,
        count=search_iter,
        default_s=next((t.train_time_s for t in log.trials if t.estimator == "lgbm"), 0.0),
    )
    return None if search_iter is None else search_iter - scored
