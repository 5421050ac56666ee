"""``run_automl``: checks, preprocessing, FLAML's search, and the winner as one Pipeline."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from loopml.core.errors import ValidationError
from loopml.train.automl import _flaml
from loopml.train.automl._checks import TrainingData, check_training_data
from loopml.train.automl._final import FINAL_FIT_SLACK, final_fit_rows, fit_final, subsample
from loopml.train.automl._metrics import Direction, TaskKind, resolve_metric, score_from_loss
from loopml.train.automl._preprocess import (
    ColumnPlan,
    build_preprocessor,
    plan_columns,
    training_frame,
)
from loopml.train.automl._types import AutoMLResult, Trial

TrialCallback = Callable[[Trial], None]

# Time kept back from the search for the final fit and assembling the pipeline: the winner
# is refit on all rows once the search stops, which on small and medium data takes well
# under a second, and a trial in flight when the budget runs out can end a little late.
RESERVE_SHARE = 0.04
RESERVE_MIN_S = 0.3


def _check_budget(budget_s: float, max_iter: int | None) -> None:
    if not isinstance(budget_s, int | float) or not math.isfinite(budget_s) or budget_s <= 0:
        raise ValidationError(f"budget_s must be a positive number of seconds, got {budget_s!r}")
    if max_iter is not None and max_iter < 1:
        raise ValidationError(f"max_iter must be at least 1, got {max_iter}")


def _check_estimators(estimators: Sequence[str] | None, kind: TaskKind) -> list[str]:
    allowed = list(_flaml.REGRESSORS if kind == "regression" else _flaml.CLASSIFIERS)
    if estimators is None:
        return allowed
    if isinstance(estimators, str) or not estimators:
        raise ValidationError(f"estimators must be a non-empty list of names from {allowed}")
    unknown = [e for e in estimators if e not in allowed]
    if unknown:
        why = "; ".join(f"{e}: {_flaml.EXCLUDED[e]}" for e in unknown if e in _flaml.EXCLUDED)
        raise ValidationError(
            f"cannot search {unknown} for a {kind} task: choose from {allowed}"
            + (f" ({why})" if why else ""),
            details={"unknown": unknown, "allowed": allowed},
        )
    return list(dict.fromkeys(estimators))


def _encode(labels: np.ndarray, kind: TaskKind) -> tuple[np.ndarray, np.ndarray | None]:
    """FLAML's labels (class codes, in sorted class order) and the classes."""
    if kind == "regression":
        return labels, None
    classes, codes = np.unique(labels, return_inverse=True)
    return codes.astype(np.int64), classes


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _holdout(
    eval_frame: pd.DataFrame,
    target: str,
    task: Literal["classification", "regression"],
    preprocessor: Any,
    plan: ColumnPlan,
    classes: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    data = check_training_data(eval_frame, target, task)
    if classes is None:
        return preprocessor.transform(training_frame(data.features, plan)), data.labels
    unknown = sorted({str(v) for v in data.labels} - {str(c) for c in classes})
    if unknown:
        raise ValidationError(
            f"the eval frame has classes the training frame lacks: {unknown[:10]}",
            details={"unknown": unknown[:100]},
        )
    codes = np.searchsorted(classes, data.labels)
    return preprocessor.transform(training_frame(data.features, plan)), codes.astype(np.int64)


class _TrialLog:
    """Turns FLAML's raw trials into ``Trial`` records and passes each to the callback."""

    def __init__(
        self, started: float, direction: Direction, on_trial: TrialCallback | None
    ) -> None:
        self.trials: list[Trial] = []
        self._started = started
        self._direction = direction
        self._on_trial = on_trial

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
        )
        self.trials.append(trial)
        if self._on_trial is not None:
            self._on_trial(trial)


def _winner(trials: list[Trial], outcome: _flaml.SearchOutcome) -> Trial | None:
    for trial in reversed(trials):
        if trial.estimator == outcome.best_estimator and trial.config == outcome.best_config:
            return trial
    return None


@dataclass(frozen=True)
class _Prepared:
    data: TrainingData
    plan: ColumnPlan
    preprocessor: Any
    matrix: np.ndarray
    codes: np.ndarray
    classes: np.ndarray | None
    holdout: tuple[np.ndarray, np.ndarray] | None


def _prepare(
    data: TrainingData,
    target: str,
    task: Literal["classification", "regression"],
    eval_frame: pd.DataFrame | None,
) -> _Prepared:
    plan = plan_columns(data.features)
    if not plan.numeric and not plan.categories:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(plan.dropped.items())[:10])
        raise ValidationError(f"no usable feature column ({reasons})")
    frame = training_frame(data.features, plan)
    preprocessor = build_preprocessor(plan)
    matrix = np.asarray(preprocessor.fit_transform(frame), dtype=np.float64)
    codes, classes = _encode(data.labels, data.kind)
    holdout = None
    if eval_frame is not None:
        holdout = _holdout(eval_frame, target, task, preprocessor, plan, classes)
    return _Prepared(data, plan, preprocessor, matrix, codes, classes, holdout)


def _search_budget(budget_s: float, spent_s: float) -> float:
    reserve = max(RESERVE_MIN_S, RESERVE_SHARE * budget_s)
    left = budget_s - spent_s - reserve
    if left <= 0:
        raise ValidationError(
            f"a budget of {budget_s:g} s is too small: preparing the data took "
            f"{spent_s:.1f} s and the final fit needs {reserve:.1f} s",
            details={"budget_s": budget_s},
        )
    return left


def _final_model(
    prep: _Prepared,
    outcome: _flaml.SearchOutcome,
    best: Trial | None,
    seconds_left: float,
    seed: int,
) -> tuple[Any, int]:
    steps = _flaml.final_steps(outcome.best_estimator, outcome.best_config, prep.data.kind)
    rows = final_fit_rows(best, len(prep.codes), seconds_left)
    if rows < len(prep.codes):
        picked = subsample(prep.codes, rows, prep.data.kind, seed)
        matrix, labels = prep.matrix[picked], prep.data.labels[picked]
    else:
        matrix, labels = prep.matrix, prep.data.labels
    return fit_final(prep.preprocessor, matrix, labels, steps), rows


def run_automl(
    train: pd.DataFrame,
    target: str,
    *,
    task: Literal["classification", "regression"],
    budget_s: float,
    metric: str | None = None,
    seed: int = 0,
    estimators: Sequence[str] | None = None,
    eval_frame: pd.DataFrame | None = None,
    on_trial: TrialCallback | None = None,
    max_iter: int | None = None,
) -> AutoMLResult:
    """Search learners and hyperparameters with FLAML; return the winner as one Pipeline.

    The whole call (checks, preprocessing, search, final fit) aims to take ``budget_s``
    seconds of wall time: the search gets what preprocessing left, less a reserve for the
    final fit. The winner is refit on all labelled rows of ``train``, unless it was found
    on a sample and its trial's pace says that refit would overrun the budget by more than
    ``FINAL_FIT_SLACK``: then it is refit on a seeded, class-stratified sample of as many
    rows as fit (``AutoMLResult.final_fit_rows`` says how many).

    Args:
        train: the training frame, target column included.
        target: the target column's name.
        task: ``classification`` or ``regression``.
        budget_s: the wall-time budget in seconds.
        metric: the metric to optimize (FLAML's names); by default ``roc_auc`` (binary),
            ``log_loss`` (multiclass) or ``r2`` (regression).
        seed: the search's seed.
        estimators: learners to search, a subset of ``lgbm``, ``rf``, ``extra_tree`` and
            ``lrl1`` (classification) or ``enet`` (regression); all of them by default.
        eval_frame: rows to score trials on (a holdout); FLAML cross-validates or holds
            out part of ``train`` when omitted. Never pass the frozen eval set the model is
            judged on.
        on_trial: called after every trial with the trial and the best score so far.
        max_iter: stop after this many trials. Learners then take turns, so the same
            seed and data give the same trials, whatever the machine's speed.

    Returns:
        The fitted winner, every trial, and the timings.

    Raises:
        ValidationError: bad arguments or data (see ``check_training_data``), a metric
            that does not fit the task, or a budget preprocessing alone used up.
    """
    started = time.perf_counter()
    _check_budget(budget_s, max_iter)
    data = check_training_data(train, target, task)
    kind = data.kind
    metric, direction = resolve_metric(metric, kind)
    names = _check_estimators(estimators, kind)
    prep = _prepare(data, target, task, eval_frame)
    prepared = time.perf_counter()
    log = _TrialLog(started, direction, on_trial)
    outcome = _flaml.search(
        prep.matrix,
        prep.codes,
        kind=kind,
        metric=metric,
        budget_s=budget_s,
        time_budget_s=_search_budget(budget_s, prepared - started),
        estimators=names,
        seed=seed,
        max_iter=max_iter,
        holdout=prep.holdout,
        on_trial=log,
    )
    searched = time.perf_counter()
    seconds_left = budget_s * (1 + FINAL_FIT_SLACK) - (searched - started)
    best = _winner(log.trials, outcome)
    model, rows = _final_model(prep, outcome, best, seconds_left, seed)
    finished = time.perf_counter()
    return AutoMLResult(
        model=model,
        task=task,
        kind=kind,
        metric=metric,
        direction=direction,
        best_estimator=outcome.best_estimator,
        best_config=outcome.best_config,
        best_score=score_from_loss(outcome.best_loss, direction),
        trials=log.trials,
        eval_method=outcome.eval_method,
        budget_s=float(budget_s),
        elapsed_s=finished - started,
        timings={
            "prepare": prepared - started,
            "search": searched - prepared,
            "final_fit": finished - searched,
        },
        classes=None if prep.classes is None else [_plain(c) for c in prep.classes],
        dropped_columns=dict(prep.plan.dropped),
        dropped_rows=prep.data.dropped_rows,
        final_fit_rows=rows,
        seed=seed,
        estimators=names,
    )
