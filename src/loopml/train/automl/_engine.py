"""``run_automl``: checks, preprocessing, the library defaults, FLAML's search, and the
winner as one Pipeline."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from loopml.core.errors import ValidationError
from loopml.train.automl import _bag, _costs, _ensemble, _flaml, _portfolio, _warm
from loopml.train.automl._checks import check_training_data
from loopml.train.automl._clock import Clock
from loopml.train.automl._defaults import default_learners, score_default, starting_points
from loopml.train.automl._final import FINAL_FIT_SLACK, final_fit_rows, fit_final, subsample
from loopml.train.automl._inputs import (
    PreparedData,
    check_budget,
    check_estimators,
    prepare,
    resolve_n_jobs,
)
from loopml.train.automl._metrics import Direction, resolve_metric
from loopml.train.automl._preprocess import ColumnPlan, code_columns
from loopml.train.automl._select import CostLimits, no_winner, pick_winner
from loopml.train.automl._split import N_SPLITS, Validation, make_validation
from loopml.train.automl._trial_log import TrialLog
from loopml.train.automl._turn import EnsembleTurn
from loopml.train.automl._types import AutoMLResult, Trial

if TYPE_CHECKING:
    from loopml.train.automl._ray import RaySearch, RayTrials

TrialCallback = Callable[[Trial], None]

# From this many searched rows on (FLAML's first sample size), the lgbm search starts from
# the default: a climb from FLAML's 4 trees of 4 leaves on such a frame rarely passes the
# default within a short budget (on diamonds' 36,409 rows, 30 s: RMSE 578 against the
# default's 513; started from it, 508). On fewer rows trials are cheap, the climb is
# quick, and that start would spend a trial scoring the default again.
DEFAULT_START_ROWS = 10_000
# Why a search stopped (``AutoMLResult.stopped``). A search that returns with more than
# EXHAUSTED_MIN_S (and 5 % of the budget) left over ran out of configurations to try.
BUDGET = "budget"
MAX_ITER = "max_iter"
EXHAUSTED = "search space exhausted"
EXHAUSTED_MIN_S = 1.0


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _linear_trial_s(rows: int, columns: int, classes: int, method: str) -> float:
    """The linear learner's estimated trial: one fit per fold, on the rest of the rows."""
    name = "enet" if classes == 0 else "lrl1"
    if method != "cv":
        return _costs.linear_fit_s(name, rows, columns, classes)
    fold_rows = rows * (N_SPLITS - 1) // N_SPLITS
    return N_SPLITS * _costs.linear_fit_s(name, fold_rows, columns, classes)


def _inputs_ms(plan: ColumnPlan, columns: list[str]) -> float:
    """The model server's estimated time for one row's inputs: the columns of the
    package's signature (the used ones of ``columns``), by their kind in ``plan``."""
    used = plan.used(columns)
    texts, dates = len(plan.categories), len(plan.dates)
    return _costs.input_ms(len(used) - texts - dates, texts, dates)


def _final_model(
    prep: PreparedData,
    best: Trial,
    seconds_left: float,
    seed: int,
    n_jobs: int,
    bag: Validation | None = None,
) -> tuple[Any, int]:
    """The winner fitted: on each fold of ``bag`` (``_bag.fit_bag``) when given, else on
    every row (or as many as ``seconds_left`` allows: ``final_fit_rows``)."""
    kind = prep.data.kind
    categorical = code_columns(prep.plan)

    def steps() -> list[tuple[str, Any]]:
        if best.estimator == _ensemble.ESTIMATOR:
            return _ensemble.final_steps(best.config, kind, n_jobs=n_jobs, categorical=categorical)
        return _flaml.final_steps(
            best.estimator, best.config, kind, n_jobs=n_jobs, categorical=categorical
        )

    if bag is not None:
        from sklearn.pipeline import Pipeline

        bagged = _bag.fit_bag(steps, bag, kind, prep.data.labels)
        return Pipeline([("preprocess", prep.preprocessor), *bagged]), len(prep.codes)
    rows = final_fit_rows(best, len(prep.codes), seconds_left)
    if rows < len(prep.codes):
        picked = subsample(prep.codes, rows, prep.data.kind, seed)
        matrix, labels = prep.matrix[picked], prep.data.labels[picked]
    else:
        matrix, labels = prep.matrix, prep.data.labels
    return fit_final(prep.preprocessor, matrix, labels, steps()), rows


def _fit_winner(
    prep: PreparedData,
    validation: Validation,
    clock: Clock,
    bagger: _bag.Bagger,
    best: Trial,
    end: float,
    seed: int,
    n_jobs: int,
) -> tuple[Any, int, float, float, int]:
    """The winner fitted, bagged when the clock says its bag fits (``Clock.bags``), with
    ``end`` seconds left: the model, the rows it was refit on, its estimated package (MB)
    and one-row latency (ms), and the folds it was bagged on (0: refit)."""
    bagged = clock.bags(best)
    size, latency = bagger.estimates(best) if bagged else (best.size_mb, best.predict_ms)
    bag = validation if bagged else None
    model, rows = _final_model(prep, best, end - clock.package_s(best), seed, n_jobs, bag=bag)
    return model, rows, size, latency, _bag.FOLDS if bagged else 0


def _score_defaults(
    defaults: list[str],
    log: TrialLog,
    clock: Clock,
    score_here: Callable[[str], _flaml.RawTrial],
    *,
    direction: Direction,
    limits: CostLimits,
    on_ray: RaySearch | None,
) -> list[str]:
    """Score the defaults in turn (on Ray, as many at a time as the cluster has CPUs);
    returns those scored."""
    wave = 1 if on_ray is None else on_ray.slots
    for i in range(0, len(defaults), wave):
        # The first default is scored whatever the clock says (there must be a winner);
        # a later one only when it fits, by the last one's time, beside the best's reserve.
        spare = clock.left() - clock.reserve(pick_winner(log.trials, direction, limits))
        if i and spare < log.trials[-1].train_time_s:
            return defaults[:i]
        found = (
            [score_here(defaults[i])]
            if on_ray is None
            # Given up on only past twice the budget: a slow first default runs over, as
            # here; a cluster whose CPUs are all held would wait forever.
            else on_ray.score_defaults(defaults[i : i + wave], clock.left() + clock.budget_s)
        )
        for raw in found:
            log(raw)
    return defaults


def _search(
    prep: PreparedData,
    validation: Validation,
    log: TrialLog,
    clock: Clock,
    turn: EnsembleTurn,
    *,
    metric: str,
    direction: Direction,
    names: list[str],
    all_learners: bool,
    linear_first: bool,
    seed: int,
    max_iter: int | None,
    n_jobs: int,
    limits: CostLimits,
    on_ray: RaySearch | None = None,
) -> str:
    """Score the defaults, then let FLAML search for what the clock leaves (the ensemble's
    turn comes inside the search: ``EnsembleTurn``), here or, with ``on_ray``, as tasks on
    a Ray cluster. Returns why the search stopped: ``budget``, ``max_iter`` or ``search
    space exhausted``."""
    kind = prep.data.kind
    defaults = default_learners(
        names, all_learners=all_learners, classes=prep.classes, linear_first=linear_first
    )
    defaults = _score_defaults(
        defaults[: max_iter or None],
        log,
        clock,
        lambda name: score_default(name, validation, kind=kind, metric=metric, n_jobs=n_jobs),
        direction=direction,
        limits=limits,
        on_ray=on_ray,
    )
    search_iter = None if max_iter is None else max_iter - len(defaults)
    if on_ray is None and _portfolio.applies(kind, metric, names, all_learners):
        search_iter = _portfolio.score_before_search(
            validation, log, clock, metric, direction, limits, n_jobs, search_iter
        )
    if search_iter == 0:
        return MAX_ITER
    # Under a cap the ensemble comes after the search, as the trials do not depend on the
    # clock there.
    budget = turn.search_left() if max_iter is None else turn.spare()
    if budget <= 0 and log.trials:
        return BUDGET
    start = len(validation.labels) >= DEFAULT_START_ROWS
    if on_ray is not None:
        on_ray.search(
            names,
            seed=seed,
            max_iter=search_iter,
            budget_s=max(budget, 0.1),
            time_left=turn.search_left,
            on_trial=log,
            start=start,
        )
    else:
        _flaml.search(
            validation,
            kind=kind,
            metric=metric,
            time_budget_s=max(budget, 0.1),
            estimators=names,
            seed=seed,
            max_iter=search_iter,
            n_jobs=n_jobs,
            time_left=turn.search_left,
            on_trial=log,
            starting_points=starting_points(names) if start else None,
        )
    if max_iter is not None:
        return MAX_ITER
    # FLAML ends early only when every learner's search space is used up.
    return EXHAUSTED if turn.spare() > max(EXHAUSTED_MIN_S, 0.05 * clock.budget_s) else BUDGET


def _on_ray(ray: RayTrials, validation: Validation, kind: Any, metric: str) -> RaySearch:
    from loopml.train.automl._ray import RaySearch

    return RaySearch(ray, validation, kind, metric)


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
    n_jobs: int | None = None,
    max_model_mb: float | None = None,
    max_predict_ms: float | None = None,
    keep_columns: Collection[str] = (),
    include_packaging: bool = False,
    include_registration: bool = False,
    linear_first: bool = False,
    ray: RayTrials | None = None,
    bagging: bool = False,
) -> AutoMLResult:
    """Score the library defaults, search with FLAML, and return the winner as one Pipeline.

    The whole call (checks, preprocessing, the defaults, the search, the final fit) aims to
    take ``budget_s`` seconds of wall time: after every trial the search's end is moved so
    that the best model so far can still be refit (and, with ``include_packaging``,
    packaged) in what is left; the final ensemble is decided inside the search when the
    clock reaches the room kept for it, and a refused one hands that room back to the
    search (``EnsembleTurn``). The winner is the trial with the best validation score
    whose estimated package fits ``max_model_mb`` and whose estimated one-row latency on
    the model server fits ``max_predict_ms``; of trials within 0.1 % of that score, the
    smallest. When preparing the data used the budget up, the defaults are still
    scored and the call runs over. The winner is refit on all labelled rows of ``train``,
    unless its trial's pace
    says that refit would overrun the budget by more than ``FINAL_FIT_SLACK``: then on a
    seeded, class-stratified sample of as many rows as fit (``final_fit_rows``). With
    ``bagging``, a cross-validated winner is bagged instead where it fits.

    Args:
        train: the training frame, target column included.
        target: the target column's name.
        task: ``classification`` or ``regression``.
        budget_s: the wall-time budget in seconds.
        metric: the metric to optimize (FLAML's names); by default ``roc_auc`` (binary),
            ``log_loss`` (multiclass) or ``r2`` (regression).
        seed: the seed of the validation split and the search.
        estimators: learners to search, a subset of ``lgbm``, ``rf``, ``extra_tree`` and
            ``lrl1`` (classification) or ``enet`` (regression); all of them by default,
            but the linear one when one trial of it would take more than
            ``LINEAR_SHARE`` of the budget (``_costs.linear_fit_s``).
            The default of each one in ``DEFAULTS`` is scored first, and XGBoost's too
            when none are named (see ``_defaults.default_learners``).
        eval_frame: rows to score trials on (a holdout); the rows of ``train`` are
            cross-validated or a seeded share held out when omitted. Never pass the frozen
            eval set the model is judged on.
        on_trial: called after every trial with the trial and the best score so far.
        max_iter: stop after this many trials (the defaults included). Learners then take
            turns, so the same seed and data give the same trials, whatever the machine's
            speed.
        n_jobs: threads for the trials and the final fit; ``-1`` every core; by default
            the cores the machine leaves idle (``resolve_n_jobs``).
        max_model_mb: the largest package, in MB, the winner may make (estimated from its
            configuration: see ``_costs``).
        max_predict_ms: the longest one-row (batch 1) latency on the model server, in ms,
            the winner may take (estimated from its configuration and the columns:
            ``_costs.predict_ms``; ``train_model`` measures the package's).
        keep_columns: columns to use even though they look like identifiers.
        include_packaging: also keep back, within the budget, the time packaging the
            winner is expected to take (``train_model`` packages it next).
        include_registration: also keep back the time registering the winner and scoring
            it on the frozen eval set are expected to take (``_costs.register_s``).
        linear_first: the linear learner is the first candidate (for embeddings: dense,
            wide, few rows): its default is scored first and it leads the search, and it
            is searched unless one trial of it would take half the budget.
        ray: a joined Ray cluster (``_ray.connect``): the defaults and the search's trials
            run there, one CPU each, as many at a time as it has CPUs (``_ray``); the
            ensemble and the final fit stay in this process.
        bagging: under (stratified) cross-validation, fit a single-model winner once on
            each fold's training rows and average the fold models (``_bag``), when its
            bag's estimates fit the limits and the time left holds its fits; else it is
            refit on every row. Off by default: on the benchmark it helped three data sets
            and hurt two (docs/training.md).

    Returns:
        The fitted winner, every trial, and the timings.

    Raises:
        ValidationError: bad arguments or data (see ``check_training_data``), a metric
            that does not fit the task, a budget below the final fit's reserve, or no
            trial within ``max_model_mb`` and ``max_predict_ms``.
    """
    started = time.perf_counter()
    if include_packaging:
        _warm.warm_packaging()
    check_budget(budget_s, max_iter, max_model_mb, max_predict_ms)
    limits = CostLimits(max_model_mb, max_predict_ms)
    data = check_training_data(train, target, task)
    metric, direction = resolve_metric(metric, data.kind)
    check_estimators(estimators, data.kind)
    threads = resolve_n_jobs(n_jobs)
    prep = prepare(data, target, task, eval_frame, keep_columns)
    rows, columns = prep.matrix.shape
    method = "holdout" if prep.holdout is not None else _flaml.eval_method(rows, columns, budget_s)
    names = check_estimators(
        estimators,
        data.kind,
        linear_trial_s=_linear_trial_s(rows, columns, prep.n_classes, method),
        budget_s=budget_s,
        linear_first=linear_first,
    )
    validation = make_validation(
        prep.matrix,
        prep.codes,
        kind=data.kind,
        method=method,
        seed=seed,
        holdout=prep.holdout,
        categorical=code_columns(prep.plan),
    )

    def size_mb(name: str, config: dict[str, Any]) -> float:
        return _costs.size_mb(name, config, rows, prep.n_classes, columns)

    inputs_ms = _inputs_ms(prep.plan, list(data.features.columns))
    if max_predict_ms is not None and inputs_ms >= max_predict_ms:
        # Every model reads the same inputs: no search can end under the limit.
        raise ValidationError(
            f"no model can answer one row within {max_predict_ms:g} ms (max_predict_ms): "
            f"reading the row's {len(prep.plan.used(list(data.features.columns)))} columns "
            f"alone takes about {inputs_ms:.4f} ms on the model server (estimated), before "
            "any model runs. Raise max_predict_ms, or give the model fewer columns",
            details={"max_predict_ms": max_predict_ms, "inputs_ms": round(inputs_ms, 5)},
        )

    def predict_ms(name: str, config: dict[str, Any]) -> float:
        return _costs.predict_ms(name, config, rows, prep.n_classes, inputs_ms=inputs_ms)

    bagger = _bag.Bagger(
        enabled=bagging and _bag.possible(validation, data.kind),
        limits=limits,
        size_mb=size_mb,
        predict_ms=predict_ms,
    )
    clock = Clock(
        started,
        budget_s,
        prep,
        method,
        include_packaging,
        include_registration,
        bagger,
        loss_call_s=_ensemble.loss_call_s(metric, data.kind),
    )
    clock.check_floor()
    prepared = time.perf_counter()
    log = TrialLog(started, direction, on_trial, size_mb, predict_ms)
    turn = EnsembleTurn(
        validation,
        log,
        clock,
        kind=data.kind,
        metric=metric,
        direction=direction,
        n_jobs=threads,
        limits=limits,
    )
    stopped = _search(
        prep,
        validation,
        log,
        clock,
        turn,
        metric=metric,
        direction=direction,
        names=names,
        all_learners=estimators is None,
        linear_first=linear_first,
        seed=seed,
        max_iter=max_iter,
        n_jobs=threads,
        limits=limits,
        on_ray=None if ray is None else _on_ray(ray, validation, data.kind, metric),
    )
    if turn.winner() is None:
        raise no_winner(log.trials, limits, budget_s)
    turn.take()
    best = turn.winner()
    assert best is not None  # a kept blend only adds a trial
    searched = time.perf_counter()
    end = budget_s * (1 + FINAL_FIT_SLACK) - (searched - started)
    model, fit_rows, size, latency, folds = _fit_winner(
        prep, validation, clock, bagger, best, end, seed, threads
    )
    finished = time.perf_counter()
    return AutoMLResult(
        model=model,
        task=task,
        kind=data.kind,
        metric=metric,
        direction=direction,
        best_estimator=best.estimator,
        best_config=best.config,
        best_score=best.score,
        trials=log.trials,
        eval_method=method,
        budget_s=float(budget_s),
        elapsed_s=finished - started,
        timings={
            "prepare": prepared - started,
            "search": searched - prepared - turn.seconds,
            "ensemble": turn.seconds,
            "final_fit": finished - searched,
        },
        classes=None if prep.classes is None else [_plain(c) for c in prep.classes],
        dropped_columns=dict(prep.plan.dropped),
        dropped_rows=data.dropped_rows,
        final_fit_rows=fit_rows,
        seed=seed,
        estimators=names,
        used_columns=prep.plan.used(list(data.features.columns)),
        identifier_columns={c: prep.plan.dropped[c] for c in prep.plan.identifiers},
        size_mb=round(size, 4),
        n_jobs=threads,
        max_model_mb=max_model_mb,
        predict_ms=round(latency, 5),
        max_predict_ms=max_predict_ms,
        ensemble=turn.summary,
        stopped=stopped,
        ensemble_in_search=turn.in_search,
        on="local" if ray is None else "ray",
        concurrent_trials=1 if ray is None else ray.slots,
        bagged_folds=folds,
    )
