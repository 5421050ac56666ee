"""The training service: AutoML or the user's own ``fit(ctx)`` on a dataset snapshot, tracked,
packaged, registered and evaluated, from the SDK (``loopml.train_model``, with an example),
``loopml train`` or a pipeline's training step.

Training runs in the caller's process; everything it records goes where its
``TrainingAccess`` points: a server over HTTP or the embedded stores. The steps:

1. read the dataset version's frozen split (train rows, eval rows and their hash);
2. start a run with the dataset as its input and the target and task as params;
3. AutoML: each trial becomes a child run; custom: ``fit(ctx)`` inside an error boundary,
   with checkpoints that a retry resumes from;
4. package and log the model (ONNX when it exports with parity, else skops);
5. register it as the next version of ``register_as`` (when given), and have the registry
   score it on the frozen eval set: the evaluation report the gate judges.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from loopml.core.errors import LoopmlError, UserCodeError, ValidationError
from loopml.core.gate import EvaluationReport
from loopml.core.registry import ModelVersion, VersionStatus
from loopml.core.runs import LoggedModel, parse_batch
from loopml.train.budget import BudgetSpend
from loopml.train.latency import LatencyCheck
from loopml.train.options import TrainOptions
from loopml.train.search_options import Searched as Searched
from loopml.train.search_options import SearchOptions as SearchOptions
from loopml.train.tracking.active import ActiveRun, start_run_on
from loopml.train.tracking.backend import TrackingBackend

if TYPE_CHECKING:
    import pandas as pd

    from loopml.train.automl import AutoMLResult, RayTrials, Trial
    from loopml.train.custom import CheckpointStore

Task = Literal["classification", "regression"]
CHECKPOINTS_PREFIX = "checkpoints"
SAMPLE_ROWS = 1000
# Kept out of AutoML's budget when the model is registered: registering it and having the
# registry score it on the eval set (metrics, 200 single-row latency calls) took 1.3-8.4 s
# on the shared 2-core machine at load 4-12, 3.2 s the median of ten calls. The budget is
# kept within 10 % either side, so this is the usual figure, not the worst.
REGISTER_RESERVE_S = 3.0
MIN_AUTOML_SHARE = 0.25


@dataclass(frozen=True)
class TrainOutcome:
    """What ``train`` did.

    Attributes:
        run_id: the training run.
        dataset: the dataset version trained on (``name@3``).
        eval_hash: the frozen eval set's hash.
        model_format: ``onnx`` or ``skops``, how the package serves.
        version: the registered version, when ``register_as`` was given.
        evaluation: the registry's evaluation report of that version.
        best_estimator: the AutoML winner's learner (``None`` for custom training).
        best_score: the AutoML winner's search score.
        trials: how many AutoML trials ran.
        resumed_from: the checkpoint step custom training resumed from, if any.
        elapsed_s: wall time of the whole call.
        package_mb: the model package's size (ONNX, skops, manifest), in MB.
        predict_ms: the AutoML package's one-row latency (batch 1) as the model server runs
            it, the median of ``latency.CALLS`` calls, in ms (``None`` for custom training).
        used_columns: the feature columns the AutoML model reads.
        excluded_columns: the columns AutoML left out, each with the reason (identifier-like
            ones among them unless kept with ``keep_columns``).
    """

    run_id: str
    dataset: str
    eval_hash: str
    model_format: str
    version: ModelVersion | None = None
    evaluation: EvaluationReport | None = None
    best_estimator: str | None = None
    best_score: float | None = None
    trials: int = 0
    resumed_from: int | None = None
    elapsed_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    package_mb: float | None = None
    predict_ms: float | None = None
    used_columns: list[str] = field(default_factory=list)
    excluded_columns: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Frames:
    """A dataset version's frozen split, as frames."""

    label: str
    train: pd.DataFrame
    eval: pd.DataFrame
    eval_hash: str


class TrainingAccess(Protocol):
    """Where training reads its dataset and records what it made: a server over HTTP
    (``loopml.sdk.backends.HttpAccess``) or the embedded stores
    (``loopml.registry.embedded_training.EmbeddedAccess``)."""

    project: str

    @property
    def backend(self) -> TrackingBackend:
        """Where the run's own records go."""

    def frames(self, ref: str) -> Frames:
        """The frozen train and eval rows of dataset version ``ref``."""

    def register(self, model: str, run_id: str, description: str) -> ModelVersion:
        """Register the run's logged model as the next version of ``model``."""

    def evaluate(self, model: str, version: int, dataset: str) -> EvaluationReport:
        """Have the registry score the version on the dataset's frozen eval set."""

    def checkpoints(self) -> CheckpointStore:
        """Where custom training keeps its checkpoints."""


class _ChildRuns:
    """Each AutoML trial as a FINISHED child run of the training run, through the backend."""

    def __init__(
        self,
        run: ActiveRun,
        experiment: str,
        metric: str,
        on_trial: Callable[[Trial], None] | None,
    ) -> None:
        self._run = run
        self._experiment = experiment
        self._metric = metric
        self._on_trial = on_trial
        self.count = 0

    def __call__(self, trial: Trial) -> None:
        from loopml.train.automl import trial_batch

        backend = self._run._backend
        child = backend.start(
            self._experiment,
            trial_batch(trial, self._metric, self._run.id),
            heartbeat_timeout_s=None,
            name=f"trial-{trial.iteration:04d}-{trial.estimator}",
            parent_run_id=self._run.id,
        )
        backend.end(child.id, "FINISHED")
        self.count += 1
        if trial.improved:
            self._run.log_metric("automl.best_score", float(trial.best_score), step=self.count)
        if self._on_trial is not None:
            self._on_trial(trial)


def _sample(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    features = frame.drop(columns=[target])
    return features.head(SAMPLE_ROWS)


def _check_task(task: str) -> Task:
    if task == "classification":
        return "classification"
    if task == "regression":
        return "regression"
    raise ValidationError(
        f"invalid task {task!r}: expected 'classification' or 'regression'",
        details={"field": "task"},
    )


def train(
    access: TrainingAccess,
    options: TrainOptions,
    *,
    on_trial: Callable[[Trial], None] | None = None,
    started: float | None = None,
) -> TrainOutcome:
    """Train on a dataset version's frozen split; track, package, register and evaluate.

    Args:
        access: where datasets are read and runs, models and checkpoints recorded (a server
            over HTTP, or the embedded stores); it also names the project.
        options: what to train on, search and register (``loopml.train_model`` documents
            each option and builds them); here the task is ``classification`` or
            ``regression`` only; a model package's size (``max_model_mb``) and one-row
            latency (``max_predict_ms``) are estimated from each trial's configuration, and
            the winner's latency is measured on its package (``loopml.train.latency``).
        on_trial: called with each AutoML trial (progress).
        started: the ``time.monotonic()`` reading the budget counts from (default: now).

    AutoML keeps the whole call (reading the data, search, refit, packaging, registration
    and evaluation) within ``budget_s``: it gets what reading the data left, and reserves
    the winner's estimated refit, packaging and registration time out of it. Where the
    budget went is recorded on the run (``loopml.train.budget``) and in
    ``details["budget"]``.

    Raises:
        UserCodeError: custom training code raised (its traceback is in the details).
        ValidationError: bad arguments, data AutoML refuses, or an AutoML package measured
            over ``max_predict_ms`` (the run then fails, nothing is registered).
        ConflictError: the dataset version has no split.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    started = time.monotonic() if started is None else started
    data, search, entrypoint = options.data, options.search, options.entrypoint
    target, params, registration = data.target, options.params, options.registration
    spend = BudgetSpend(search.budget_s, started)
    kind = _check_task(data.task)
    if entrypoint is None:
        from loopml.train.automl import warm_packaging

        _join(search)  # before the run starts: a cluster out of reach fails at once
        warm_packaging()  # seconds of imports, done while the data is read and searched
    frames = access.frames(data.dataset)
    if target not in frames.train.columns:
        raise ValidationError(
            f"dataset {frames.label} has no column {target!r}: its columns are "
            f"{', '.join(map(str, frames.train.columns[:20]))}",
            details={"field": "target"},
        )
    run_params: dict[str, Any] = {
        "target": target,
        "task": kind,
        "dataset": frames.label,
        "eval_hash": frames.eval_hash,
        "trainer": entrypoint or "automl",
    }
    run_params.update({f"param.{k}": v for k, v in params.items()})
    run = start_run_on(
        access.backend,
        options.experiment or frames.label.split("@")[0],
        name=f"train-{entrypoint or 'automl'}",
        params=run_params,
        inputs=[frames.label],
    )
    details: dict[str, Any] = {}
    check: LatencyCheck | None = None
    spend.mark("read")
    try:
        if entrypoint is None:
            # The search keeps back the registration itself, by the winner's size: a fixed
            # reserve for it was 3 times what a small model's took.
            left_s = automl_budget(search.budget_s, started, registering=False)
            result, children = search_on_run(
                run,
                frames.train,
                target,
                kind,
                left_s,
                search,
                on_trial,
                registering=registration is not None,
            )
            model = result.model
            spend.add(result.timings, rest="other")
            spend.stopped = result.stopped
            searched = searched_fields(result, children)
            details = dict(searched.details)
            resumed = None
            check = LatencyCheck(
                _sample(frames.train, target).head(1),
                search.max_predict_ms,
                estimator=result.best_estimator,
                estimated_ms=result.predict_ms,
            )
        else:
            from loopml.train.custom import run_custom

            model, resumed = run_custom(
                run,
                access.checkpoints(),
                f"{CHECKPOINTS_PREFIX}/",
                (frames.train, frames.eval, frames.label),
                target,
                entrypoint,
                dict(params),
                options.checkpoint_key,
            )
            searched = Searched()
        packaging = time.monotonic()
        logged = run.log_model(model, sample=_sample(frames.train, target), check=check)
        details["package_s"] = round(time.monotonic() - packaging, 3)
        _log_costs(run, logged, check)
        spend.mark("package")
    except BaseException as exc:
        _fail(run, exc)
        raise
    run.end("FINISHED")
    spend.mark("other")
    version, evaluation = (
        _register(access, registration.model, run.id, registration.description, frames.label)
        if registration is not None
        else (None, None)
    )
    if entrypoint is None:
        spend.mark("register")
        details["budget"] = spend.summary()
        run._backend.log_batch(run.id, spend.batch())
    return TrainOutcome(
        run_id=run.id,
        dataset=frames.label,
        eval_hash=frames.eval_hash,
        model_format=logged.format,
        version=version,
        evaluation=evaluation,
        best_estimator=searched.best_estimator,
        best_score=searched.best_score,
        trials=searched.trials,
        resumed_from=resumed,
        elapsed_s=time.monotonic() - started,
        details=details,
        package_mb=package_mb(logged),
        predict_ms=None if check is None or check.latency is None else check.latency.p50_ms,
        used_columns=searched.used_columns,
        excluded_columns=searched.excluded_columns,
    )


def _log_costs(run: ActiveRun, logged: LoggedModel, check: LatencyCheck | None) -> None:
    """The package's size and, when measured, its one-row latency, as the run's metrics
    beside its score."""
    size = package_mb(logged)
    if size is not None:
        run.log_metric("package_mb", size)
    if check is not None and check.latency is not None:
        run.log_metric("predict_ms", check.latency.p50_ms)
        run.log_metric("predict_p99_ms", check.latency.p99_ms)


def package_mb(logged: LoggedModel) -> float | None:
    """The logged package's size in MB, from the size its record carries."""
    size = logged.summary.get("size_bytes")
    return None if size is None else float(size) / 1e6


def automl_budget(budget_s: float, started: float, *, registering: bool) -> float:
    """What is left of ``budget_s`` for AutoML, less ``REGISTER_RESERVE_S`` when
    ``registering`` (the text trainer's embeddings method: the tabular search counts the
    registration itself, by the winner's size). A budget that reading the data (or the
    registration to come) used up still gives AutoML a quarter of it: the call then runs
    over, rather than failing."""
    left_s = budget_s - (time.monotonic() - started)
    if registering:
        left_s -= REGISTER_RESERVE_S
    return max(left_s, MIN_AUTOML_SHARE * budget_s)


def _register(
    access: TrainingAccess, model: str, run_id: str, description: str, dataset: str
) -> tuple[ModelVersion, EvaluationReport]:
    """Register the run's model as the next version of ``model`` and have the registry score
    it on the dataset's frozen eval set."""
    version = access.register(model, run_id, description)
    if version.status != VersionStatus.READY:
        raise LoopmlError(
            f"version {version.version} of {model!r} failed registration: {version.status_message}"
        )
    return version, access.evaluate(model, version.version, dataset)


def _fail(run: ActiveRun, exc: BaseException) -> None:
    """End the run FAILED (KILLED on Ctrl-C), saying whose failure it was."""
    origin = "user_code" if isinstance(exc, UserCodeError) else "platform"
    try:
        run._backend.log_batch(
            run.id,
            parse_batch({"tags": {"loopml.failure": origin, "loopml.error": str(exc)[:4000]}}),
        )
        if isinstance(exc, UserCodeError):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "traceback.txt"
                path.write_text(str(exc.details.get("traceback", "")))
                run.log_artifact(path)
    finally:
        run.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")


def _join(options: SearchOptions) -> RayTrials | None:
    """The Ray cluster the trials run on with ``on: ray`` (joined once per process)."""
    from loopml.core.executors import check_place
    from loopml.train.automl import connect_ray

    check_place(options.on)
    return connect_ray(options.ray_address) if options.on == "ray" else None


def search_on_run(
    run: ActiveRun,
    frame: pd.DataFrame,
    target: str,
    task: Task,
    budget_s: float,
    options: SearchOptions,
    on_trial: Callable[[Trial], None] | None,
    *,
    registering: bool = False,
) -> tuple[AutoMLResult, int]:
    """AutoML on ``frame`` for ``run``: each trial a child run, the summary on the run;
    with ``registering``, the search keeps back the winner's registration too. Returns
    the result and how many trials were recorded."""
    from loopml.train.automl import resolve_metric, result_batch, run_automl

    kind = "binary" if task == "classification" else "regression"
    if task == "classification":
        classes = frame[target].nunique(dropna=True)
        kind = "binary" if classes <= 2 else "multiclass"
    name, _ = resolve_metric(options.metric, kind)  # type: ignore[arg-type]
    children = _ChildRuns(run, run.info.experiment, name, on_trial)
    result = run_automl(
        frame,
        target,
        task=task,
        budget_s=budget_s,
        on_trial=children,
        include_packaging=True,
        include_registration=registering,
        metric=options.metric,
        seed=options.seed,
        estimators=options.estimators,
        max_iter=options.max_iter,
        n_jobs=options.n_jobs,
        max_model_mb=options.max_model_mb,
        max_predict_ms=options.max_predict_ms,
        keep_columns=options.keep_columns,
        linear_first=options.linear_first,
        bagging=options.bagging,
        ray=_join(options),
    )
    run._backend.log_batch(run.id, result_batch(result))
    return result, children.count


def searched_fields(result: AutoMLResult, trials: int) -> Searched:
    """What an AutoML search puts in the outcome, the same for every task."""
    return Searched(
        best_estimator=result.best_estimator,
        best_score=result.best_score,
        trials=trials,
        used_columns=list(result.used_columns),
        excluded_columns=dict(result.dropped_columns),
        details={
            "best_config": result.best_config,
            "metric": result.metric,
            "estimated_mb": result.size_mb,
            "estimated_predict_ms": result.predict_ms,
            "bagged_folds": result.bagged_folds,
            "n_jobs": result.n_jobs,
            "automl_s": round(result.elapsed_s, 3),
            "on": result.on,
            "concurrent_trials": result.concurrent_trials,
        },
    )
