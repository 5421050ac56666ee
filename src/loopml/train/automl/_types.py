"""What an AutoML run reports: each trial as it finishes, and the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from loopml.train.automl._metrics import Direction, TaskKind


class Trial(BaseModel):
    """One finished trial of the search, and the search's state right after it.

    ``elapsed_s``, ``best_score`` and ``best_estimator`` are what a progress display shows:
    the time spent of the budget, and the best score so far.
    """

    model_config = ConfigDict(frozen=True)

    iteration: int = Field(ge=1, description="1 for the first trial of the run.")
    estimator: str = Field(description="The learner: lgbm, rf, extra_tree, lrl1, enet, ...")
    config: dict[str, Any] = Field(description="The trial's hyperparameters (FLAML's names).")
    score: float = Field(description="The trial's validation score on the run's metric.")
    train_time_s: float = Field(description="Time to train and score this trial.")
    sample_size: int = Field(description="Training rows the trial used (FLAML subsamples).")
    elapsed_s: float = Field(description="Seconds since run_automl started.")
    best_score: float = Field(description="The best score so far, this trial included.")
    best_estimator: str = Field(description="The learner of the best trial so far.")
    improved: bool = Field(description="Whether this trial is the new best.")
    source: str = Field(
        default="search",
        description="``default`` (a library default, scored before the search), "
        "``portfolio`` (a regression's early-stopped LightGBM, scored next), ``search`` "
        "(FLAML's) or ``ensemble``.",
    )
    size_mb: float = Field(
        default=0.0, description="The estimated package size of this trial's model, in MB."
    )
    predict_ms: float = Field(
        default=0.0,
        description="The estimated latency of one row (batch 1) on the model server, in ms.",
    )
    node: str = Field(
        default="", description="The Ray node the trial ran on (``--on ray``), else empty."
    )

    @property
    def family(self) -> str:
        """What the final ensemble takes one candidate of: the learner (its best trial), or
        for a portfolio trial the trial itself (each is a model of its own kind)."""
        return (
            f"{self.estimator}#{self.iteration}" if self.source == "portfolio" else self.estimator
        )


@dataclass(frozen=True)
class AutoMLResult:
    """The outcome of ``run_automl``.

    Attributes:
        model: the winner, fitted on all training rows: one scikit-learn ``Pipeline``
            (``preprocess`` ColumnTransformer, an optional ``scale`` step, ``model``) that
            ``loopml.packaging.package_model`` packages. It takes a date column as its
            calendar columns ``<column>.<part>`` (``loopml.packaging.dates.expand_frame``
            makes them); the package takes the dates themselves.
        task: ``classification`` or ``regression``.
        kind: ``binary``, ``multiclass`` or ``regression``.
        metric: the metric optimized (FLAML's name); ``direction`` says which way is better.
        best_estimator: the winner's learner name.
        best_config: the winner's hyperparameters.
        best_score: the winner's validation score (cross-validation or holdout).
        trials: every finished trial, in order.
        eval_method: how trials were scored: ``cv`` or ``holdout``.
        budget_s: the time budget asked for.
        elapsed_s: wall time of the whole call.
        timings: seconds per phase: ``prepare`` (checks and preprocessing), ``search``
            (the defaults and FLAML's trials), ``ensemble`` (deciding the final blend),
            ``final_fit``; they sum to ``elapsed_s``.
        classes: the class labels in the model's order (classification), else ``None``.
        dropped_columns: columns not used, each with the reason.
        dropped_rows: training rows left out because their target is missing.
        final_fit_rows: the rows the winner was refit on: every labelled row, unless the
            budget did not allow it (see ``run_automl``).
        seed: the search's seed.
        estimators: the learners searched.
        used_columns: the feature columns the model reads, in order.
        identifier_columns: the identifier-like columns left out (also in
            ``dropped_columns``), each with the reason.
        size_mb: the winner's estimated package size in MB (its bag's when bagged).
        n_jobs: the threads the search and the final fit used.
        max_model_mb: the package size limit asked for, if any.
        predict_ms: the winner's estimated one-row latency on the model server, in ms
            (its bag's when bagged).
        max_predict_ms: the one-row latency limit asked for, if any.
        ensemble: the final blend tried, if any (``_ensemble.Blend.summary``): its members
            and votes, cross-fitted loss, gain over the best single model on each fold,
            the margin that gain had to clear, and whether it was kept as a trial.
        stopped: why the search stopped: ``budget`` (its time was up), ``max_iter``, or
            ``search space exhausted`` (FLAML ran out of configurations with time left).
        ensemble_in_search: whether the ensemble was decided inside the search, which
            then went on with the time the ensemble did not take.
        on: where the trials ran: ``local`` or ``ray``.
        concurrent_trials: how many trials ran at a time (the Ray cluster's CPUs).
        bagged_folds: the folds the winner was bagged on (``_bag``: one fit a fold, their
            predictions averaged), 0 when it was refit on ``final_fit_rows`` rows instead.
            ``size_mb`` and ``predict_ms`` are the bag's then.
    """

    model: Any
    task: Literal["classification", "regression"]
    kind: TaskKind
    metric: str
    direction: Direction
    best_estimator: str
    best_config: dict[str, Any]
    best_score: float
    trials: list[Trial]
    eval_method: str
    budget_s: float
    elapsed_s: float
    timings: dict[str, float]
    classes: list[Any] | None
    dropped_columns: dict[str, str] = field(default_factory=dict)
    dropped_rows: int = 0
    final_fit_rows: int = 0
    seed: int = 0
    estimators: list[str] = field(default_factory=list)
    used_columns: list[str] = field(default_factory=list)
    identifier_columns: dict[str, str] = field(default_factory=dict)
    size_mb: float = 0.0
    n_jobs: int = 1
    max_model_mb: float | None = None
    predict_ms: float = 0.0
    max_predict_ms: float | None = None
    ensemble: dict[str, Any] | None = None
    stopped: str = "budget"
    ensemble_in_search: bool = False
    on: str = "local"
    concurrent_trials: int = 1
    bagged_folds: int = 0
