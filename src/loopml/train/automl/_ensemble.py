"""The final ensemble: a weighted average of the best model of each learner, kept when it
beats the best single model on the same validation rows.

Candidates are the best trial of each learner (``lgbm``, ``rf``, ``extra_tree``, the linear
one, XGBoost's default), at most ``MAX_CANDIDATES``, and each trial of a regression's
portfolio (``_portfolio``), best first. Their validation predictions come with the trial
when it was the library default or a portfolio configuration or, under holdout,
FLAML's best model of its learner so far (which FLAML keeps); any other is refit on every
fold for them; then greedy selection with replacement (Caruana et al., 2004) starts from
the best one and adds, one vote at a time, the vote that gives the lowest loss, for
``ROUNDS`` votes; the blend of lowest loss seen is kept, its votes are the weights. Losses
are FLAML's own functions, per fold and averaged, as every trial's is: the ensemble and
the trials are compared on the same number. The blend's own loss is cross-fitted: weights
chosen on the other folds (or the other parts of a holdout, cut in ``HOLDOUT_PARTS``
interleaved parts), scored on each fold in turn, so the rows that score a blend never chose it.

A lower mean loss is not enough: the blend is kept only when its gain over the best
single model is clear of the spread between folds (``clear_gain``), a one-sided paired
t-test at ``CONFIDENCE`` on the per-fold losses (the blend's cross-fitted, the best
model's on the same rows). On digits (1,797 rows, 5 folds) a blend of LightGBM's and
XGBoost's defaults scored 4.5 % better on average, all of it from one hard fold (gains
of -0.003 to +0.026 a fold), and 9 % worse on the test rows.

The blend averages predictions (regression) or probabilities (classification; a label
metric such as accuracy takes the arg-max of the averaged probabilities): scikit-learn's
``VotingRegressor`` or soft ``VotingClassifier`` with those weights, which skl2onnx exports
as one graph. A blend with a clear gain is recorded as a trial (``source`` ``ensemble``) and
picked like any other: it wins only when it beats the best single model by more than the
tie share (it is always the larger package) and its estimated package and latency fit the
limits (``max_model_mb``, ``max_predict_ms``: its members' trees add up).
"""

from __future__ import annotations

import importlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopml.train.automl import _costs, _flaml
from loopml.train.automl._metrics import Direction, TaskKind, score_to_loss
from loopml.train.automl._select import CostLimits
from loopml.train.automl._split import N_SPLITS, Validation
from loopml.train.automl._types import Trial

ESTIMATOR = _costs.ENSEMBLE
MAX_CANDIDATES = 3
ROUNDS = 10
# A learner whose best loss (FLAML's: the value for rmse or log loss, 1 - value for roc_auc
# or r2) is more than this many times the best one's is left out: it would seldom get a
# vote, and its refit and packaging would still be reserved out of the search's time.
MAX_LOSS_RATIO = 1.25
# The one-sided confidence that the blend's gain is real: its mean gain a fold must exceed
# the t quantile (with folds - 1 degrees of freedom) times the gains' standard error.
CONFIDENCE = 0.95
# A holdout is cut in this many interleaved parts for the cross-fitting and the paired
# test. Its rows are the unit there, not a fold's training set, so more parts cost
# nothing in truth and bring the t quantile near the normal's (1.83 with 9 degrees of
# freedom against 2.13 with 4).
HOLDOUT_PARTS = 10
# The confidence for a gain judged by rows (a regression's per-row errors on a holdout),
# lower than the folds': a regression blend's downside is small (its members' errors
# average), and thousands of rows measure its gain. On diamonds at 60 s the cross-fitted
# blend of LightGBM's searched best, the portfolio's large LightGBM and XGBoost's default
# gained 1.07 standard errors a row on the 4,045 holdout rows (with an extra-trees
# LightGBM too, 0.69), and scored 528.6 on the test rows (527.3) against 538.6 for the
# best single model; 95 % refused both (issue 53).
ROW_CONFIDENCE = 0.75
# Metrics FLAML scores on probabilities (``flaml.automl.ml.get_y_pred``); the rest on labels.
_PROBA = frozenset({"log_loss", "roc_auc", "roc_auc_ovr", "roc_auc_ovo", "ap", "roc_auc_weighted"})
_BINARY_COLUMN = frozenset({"roc_auc", "ap", "roc_auc_weighted"})
# Regression metrics computed here with NumPy (``_numpy_loss``).
_NUMPY_LOSSES = frozenset({"rmse", "mse", "mae", "r2"})


def _better(a: float, b: float, direction: Direction) -> bool:
    return a > b if direction == "max" else a < b


def candidates(trials: list[Trial], direction: Direction, limits: CostLimits) -> list[Trial]:
    """The best trial of each learner and every portfolio trial (``Trial.family``; finite
    score, within ``limits``, a loss within ``MAX_LOSS_RATIO`` of the best one's), best
    first: at most ``MAX_CANDIDATES`` learners, and the portfolio's on top."""
    best: dict[str, Trial] = {}
    for trial in trials:
        if trial.estimator == ESTIMATOR or not math.isfinite(trial.score):
            continue
        if not limits.fits(trial):
            continue
        held = best.get(trial.family)
        if held is None or _better(trial.score, held.score, direction):
            best[trial.family] = trial
    ranked = sorted(best.values(), key=lambda t: t.score, reverse=direction == "max")
    if not ranked:
        return []
    top = score_to_loss(ranked[0].score, direction)
    close = [t for t in ranked if score_to_loss(t.score, direction) <= MAX_LOSS_RATIO * top]
    portfolio = sum(t.family != t.estimator for t in close)
    return close[: MAX_CANDIDATES + portfolio]


def selection_calls(pool: int, method: str) -> int:
    """How many fold losses the greedy selection of a pool of this size and its
    cross-fitting compute (``_greedy``, ``_cross_fitted``): what their time is estimated
    from (``_costs.LOSS_CALL_S``)."""
    votes = 1 + (ROUNDS - 1) * pool
    folds, plain = (N_SPLITS, N_SPLITS) if method == "cv" else (HOLDOUT_PARTS, 1)
    return votes * (plain + folds * (folds - 1)) + 2 * folds


def member_config(members: list[tuple[Trial, int]]) -> dict[str, Any]:
    """An ensemble trial's configuration: each member's learner, configuration and votes."""
    return {
        "members": [
            {"estimator": t.estimator, "config": t.config, "weight": votes} for t, votes in members
        ]
    }


@dataclass(frozen=True)
class Blend:
    """The greedy selection's outcome: the members with their votes, the blend's loss
    (FLAML's, lower is better) on the validation rows, cross-fitted, and its gain over the
    best single model on each fold (that model's loss minus the blend's); for a regression
    metric of a per-row error under holdout, that gain on each row too (``row_gains``)."""

    members: list[tuple[Trial, int]]
    loss: float
    fit_s: float
    gains: tuple[float, ...] = ()
    row_gains: np.ndarray | None = None

    @property
    def config(self) -> dict[str, Any]:
        return member_config(self.members)

    @property
    def margin(self) -> float:
        """What the mean gain a fold must exceed (``clear_gain``, where the gain is not
        judged by rows); infinite with fewer than two folds."""
        return _paired_margin(np.asarray(self.gains, dtype=np.float64))

    @property
    def row_margin(self) -> float | None:
        """What the mean gain a row must exceed (``clear_gain``), when judged by rows."""
        if self.row_gains is None:
            return None
        return _paired_margin(self.row_gains, ROW_CONFIDENCE)

    @property
    def clear_gain(self) -> bool:
        """Whether the blend beats the best single model by more than the noise: its mean
        gain is positive and above the margin, of its rows' gains when it has them (a
        regression's holdout: its error is a mean over rows, each row a pair; on diamonds'
        4,045 holdout rows, ten parts' RMSE swung from -20 to +25 with one costly diamond
        or another), else of its folds'."""
        gain = float(np.mean(self.gains)) if self.gains else 0.0
        if len(self.members) < 2 or gain <= 0:
            return False
        if self.row_gains is not None:
            row_margin = self.row_margin
            assert row_margin is not None
            return float(np.mean(self.row_gains)) > row_margin
        return gain > self.margin

    def summary(self) -> dict[str, Any]:
        """What a report shows of the blend: members, loss, gain, margin, and the verdict."""
        rows = {}
        if self.row_gains is not None:
            rows = {"mean_row_gain": float(np.mean(self.row_gains)), "row_margin": self.row_margin}
        return {
            "members": {f"{t.estimator}#{t.iteration}": votes for t, votes in self.members},
            "loss": self.loss,
            "gain_per_fold": [round(g, 6) for g in self.gains],
            "mean_gain": float(np.mean(self.gains)) if self.gains else 0.0,
            "margin": self.margin,
            **rows,
            "kept": self.clear_gain,
        }


def _paired_margin(gains: np.ndarray, confidence: float = CONFIDENCE) -> float:
    """The one-sided paired t-test's bound at ``confidence``: the t quantile times the
    gains' standard error; infinite with fewer than two."""
    n = len(gains)
    if n < 2:
        return math.inf
    from scipy.stats import t as student

    spread = float(np.std(gains, ddof=1)) / math.sqrt(n)
    return float(student.ppf(confidence, n - 1)) * spread


def _predict(model: Any, x: np.ndarray, kind: TaskKind) -> np.ndarray:
    out = model.predict(x) if kind == "regression" else model.predict_proba(x)
    return np.asarray(out, dtype=np.float64)


def _fold_predictions(
    trial: Trial, validation: Validation, kind: TaskKind, n_jobs: int, deadline: float
) -> list[np.ndarray] | None:
    """``trial``'s model fitted on each fold, its predictions on the fold's rows; ``None``
    when ``deadline`` passes before the last fold (checked between folds: on a loaded
    machine a member's five fits can take many times what its trial took)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import Pipeline

    out = []
    for x_fit, y_fit, x_val, _ in validation.folds():
        if time.perf_counter() >= deadline:
            return None
        steps = _flaml.final_steps(
            trial.estimator, trial.config, kind, n_jobs=n_jobs, categorical=validation.categorical
        )
        model = Pipeline(steps)
        with warnings.catch_warnings():
            # As in the search: a linear member may stop at its max_iter, as it did there.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_fit, y_fit)
        out.append(_predict(model, x_val, kind))
    return out


def loss_call_s(metric: str, kind: TaskKind) -> float:
    """The estimated seconds of one fold loss of the greedy selection (``fold_loss``)."""
    if kind == "regression" and metric in _NUMPY_LOSSES:
        return _costs.NUMPY_LOSS_CALL_S
    return _costs.LOSS_CALL_S


def _numpy_loss(metric: str, predicted: np.ndarray, y_val: np.ndarray) -> float | None:
    """A regression metric's loss as FLAML's ``sklearn_metric_loss_score`` computes it,
    without scikit-learn's input checks, which took most of each of the greedy selection's
    thousands of calls; ``None`` where it does not say (``r2`` of a constant target)."""
    error = predicted - y_val
    if metric == "mae":
        return float(np.mean(np.abs(error)))
    mse = float(np.mean(error * error))
    if metric == "r2":
        spread = float(np.var(y_val))
        return mse / spread if spread > 0 else None
    return math.sqrt(mse) if metric == "rmse" else mse


def fold_loss(metric: str, kind: TaskKind, predicted: np.ndarray, y_val: np.ndarray) -> float:
    """One fold's loss of ``predicted`` (FLAML's, from NumPy for the common regression
    metrics)."""
    if kind == "regression" and metric in _NUMPY_LOSSES:
        fast = _numpy_loss(metric, predicted, y_val)
        if fast is not None:
            return fast
    ml = importlib.import_module("flaml.automl.ml")
    labels = np.arange(predicted.shape[1]) if predicted.ndim > 1 else None
    if kind != "regression" and metric not in _PROBA:
        predicted = np.argmax(predicted, axis=1)
    elif kind == "binary" and metric in _BINARY_COLUMN:
        predicted = predicted[:, 1]
    return float(ml.sklearn_metric_loss_score(metric, predicted, y_val, labels))


def _loss(
    votes: dict[int, int],
    preds: list[list[np.ndarray]],
    truth: list[np.ndarray],
    metric: str,
    kind: TaskKind,
) -> float:
    total = sum(votes.values())
    losses = []
    for fold, y_val in enumerate(truth):
        blended = sum(preds[i][fold] * n for i, n in votes.items()) / total
        losses.append(fold_loss(metric, kind, np.asarray(blended), y_val))
    return float(np.mean(losses))


def _aligned(preds: list[list[np.ndarray]], truth: list[np.ndarray], kind: TaskKind) -> bool:
    # A fold that lacks a class gives probabilities of fewer columns: they cannot be
    # averaged column by column.
    if kind == "regression":
        return True
    classes = len(np.unique(np.concatenate(truth)))
    return all(fold.shape[1] == classes for folds in preds for fold in folds)


def _greedy(
    preds: list[list[np.ndarray]],
    truth: list[np.ndarray],
    metric: str,
    kind: TaskKind,
    fits: Callable[[frozenset[int]], bool] | None = None,
) -> dict[int, int]:
    """The votes of the lowest-loss blend greedy selection finds on these folds, of members
    that together ``fits`` (the size and latency limits: their trees add up)."""
    votes = {0: 1}
    kept, loss = dict(votes), _loss(votes, preds, truth, metric, kind)
    allowed = [i for i in range(len(preds)) if fits is None or i == 0 or fits(frozenset({0, i}))]
    for _ in range(ROUNDS - 1):
        # Each round adds the vote that gives the lowest loss, even when no vote lowers it
        # (another vote for the best model makes room for a smaller share of the next);
        # the best blend seen is kept.
        tried = [
            (_loss(votes | {i: votes.get(i, 0) + 1}, preds, truth, metric, kind), i)
            for i in allowed
            if i in votes or fits is None or fits(frozenset(votes) | {i})
        ]
        round_loss, pick = min(tried)
        votes[pick] = votes.get(pick, 0) + 1
        if round_loss < loss:
            kept, loss = dict(votes), round_loss
    return kept


def _parts(
    preds: list[list[np.ndarray]], truth: list[np.ndarray]
) -> tuple[list[list[np.ndarray]], list[np.ndarray]]:
    """One holdout fold as ``HOLDOUT_PARTS`` interleaved parts, so that weights chosen on
    the other parts can be scored on each, and the gains compared part by part."""
    y = truth[0]
    parts = [np.arange(len(y)) % HOLDOUT_PARTS == k for k in range(HOLDOUT_PARTS)]
    return [[p[0][rows] for rows in parts] for p in preds], [y[rows] for rows in parts]


def _row_errors(metric: str, predicted: np.ndarray, y_val: np.ndarray) -> np.ndarray:
    """Each row's share of a per-row regression loss: its absolute error for ``mae``, its
    squared error for the metrics of the mean squared error (``rmse``, ``mse``, ``r2``)."""
    error = np.asarray(predicted - y_val, dtype=np.float64)
    out: np.ndarray = np.abs(error) if metric == "mae" else error * error
    return out


def _blended(votes: dict[int, int], fold: list[np.ndarray]) -> np.ndarray:
    total = sum(votes.values())
    return np.asarray(sum(fold[i] * n for i, n in votes.items()) / total)


def _cross_fitted(
    preds: list[list[np.ndarray]],
    truth: list[np.ndarray],
    metric: str,
    kind: TaskKind,
    fits: Callable[[frozenset[int]], bool] | None = None,
) -> tuple[list[float], list[float], np.ndarray | None]:
    """The blend's loss on each fold with no row scoring the weights it chose (greedy
    selection on the other folds, scored on it), the best single model's (``preds[0]``)
    on the same fold, and under holdout, for a regression metric of a per-row error
    (``_NUMPY_LOSSES``), the gain on each row (``_row_errors`` of that model less the
    blend's). Weights chosen
    and scored on the same rows flatter the blend: on digits (1,797 rows, 5 folds) a blend
    6 % better than the best model on the rows that chose it was 9 % worse on the test
    rows."""
    # A holdout's rows are its only variation (its models are fitted once), so they are the
    # pairs; folds' rows share their fold's models, whose differences the folds measure.
    by_rows = len(truth) == 1 and kind == "regression" and metric in _NUMPY_LOSSES
    if len(truth) == 1:
        preds, truth = _parts(preds, truth)
    blended, single, rows = [], [], []
    for held in range(len(truth)):
        rest = [i for i in range(len(truth)) if i != held]
        votes = _greedy(
            [[p[i] for i in rest] for p in preds], [truth[i] for i in rest], metric, kind, fits
        )
        fold = [[p[held]] for p in preds]
        blended.append(_loss(votes, fold, [truth[held]], metric, kind))
        single.append(_loss({0: 1}, fold, [truth[held]], metric, kind))
        if by_rows:
            mixed = _blended(votes, [p[held] for p in preds])
            best = _row_errors(metric, preds[0][held], truth[held])
            rows.append(best - _row_errors(metric, mixed, truth[held]))
    return blended, single, np.concatenate(rows) if by_rows else None


def blend(
    pool: list[Trial],
    validation: Validation,
    *,
    kind: TaskKind,
    metric: str,
    n_jobs: int,
    deadline: float,
    known: dict[int, list[np.ndarray]] | None = None,
    fits: Callable[[list[Trial]], bool] | None = None,
) -> Blend | None:
    """Greedy selection over ``pool`` (best first), with the blend's cross-fitted loss and
    its gain on each fold over ``pool[0]``; ``None`` when fewer than two candidates
    got their validation predictions before ``deadline`` (``time.perf_counter()``) or the
    classes of a fold do not line up. ``known`` holds predictions that came with trials
    (by iteration): those trials are not fitted again. ``fits`` says whether members
    together fit the limits (their estimated package and latency); the selection adds no
    member that would take the blend past them."""
    started = time.perf_counter()
    known = known or {}
    preds: list[list[np.ndarray]] = []
    for trial in pool:
        if trial.iteration in known:
            preds.append(known[trial.iteration])
            continue
        fitted = _fold_predictions(trial, validation, kind, n_jobs, deadline)
        if fitted is None:
            break
        preds.append(fitted)
    truth = [y_val for *_, y_val in validation.folds()]
    if len(preds) < 2 or not _aligned(preds, truth, kind):
        return None
    within = None if fits is None else lambda picked: fits([pool[i] for i in sorted(picked)])
    kept = _greedy(preds, truth, metric, kind, within)
    members = [(pool[i], n) for i, n in sorted(kept.items())]
    blended, single, row_gains = _cross_fitted(preds, truth, metric, kind, within)
    return Blend(
        members=members,
        loss=float(np.mean(blended)),
        fit_s=time.perf_counter() - started,
        gains=tuple(s - b for s, b in zip(single, blended, strict=True)),
        row_gains=row_gains,
    )


def final_steps(
    config: dict[str, Any], kind: TaskKind, *, n_jobs: int, categorical: tuple[int, ...] = ()
) -> list[tuple[str, Any]]:
    """Unfitted pipeline steps for an ensemble configuration: ``[("model", Voting...)]``
    (its LightGBM members split the ``categorical`` columns as categories)."""
    from sklearn.ensemble import VotingClassifier, VotingRegressor
    from sklearn.pipeline import Pipeline

    estimators: list[tuple[str, Any]] = []
    for i, member in enumerate(config["members"]):
        steps = _flaml.final_steps(
            member["estimator"], member["config"], kind, n_jobs=n_jobs, categorical=categorical
        )
        estimators.append(
            (f"{i}_{member['estimator']}", Pipeline(steps) if len(steps) > 1 else steps[0][1])
        )
    # skl2onnx reads the weights as an array (a list fails its export).
    weights = np.array([float(m["weight"]) for m in config["members"]])
    if kind == "regression":
        return [("model", VotingRegressor(estimators, weights=weights))]
    # flatten_transform=False: skl2onnx cannot export the flattened transform.
    voting = VotingClassifier(estimators, voting="soft", weights=weights, flatten_transform=False)
    return [("model", voting)]
