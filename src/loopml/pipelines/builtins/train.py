"""Training built-ins: ``train_automl`` and ``train_custom``, through the training service
(``loopml.train.service``) in the step's process, recording straight into the worker's store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopml.pipelines._step import StepContext
from loopml.pipelines.builtins._common import metrics
from loopml.train.search_options import DEFAULT_BUDGET_S, DEFAULT_MAX_MODEL_MB

if TYPE_CHECKING:
    from loopml.train.service import TrainingAccess


def _access(ctx: StepContext) -> TrainingAccess:
    from loopml.registry.embedded_training import EmbeddedAccess, EmbeddedBackend

    return EmbeddedAccess(EmbeddedBackend(ctx.store, ctx.artifacts, ctx.settings, ctx.project))


def _outputs(outcome: Any) -> dict[str, Any]:
    found = {"trials": outcome.trials, "elapsed_s": outcome.elapsed_s}
    if outcome.best_score is not None:
        found["best_score"] = outcome.best_score
    if outcome.resumed_from is not None:
        found["resumed_from_step"] = outcome.resumed_from
    for name in ("package_mb", "predict_ms"):
        if getattr(outcome, name, None) is not None:
            found[name] = getattr(outcome, name)
    return {"run": outcome.run_id, "metrics": metrics(found)}


def train_automl(
    ctx: StepContext,
    dataset: str,
    target: str,
    task: str,
    budget_s: float = DEFAULT_BUDGET_S,
    metric: str | None = None,
    seed: int = 0,
    estimators: list[str] | None = None,
    max_iter: int | None = None,
    experiment: str | None = None,
    max_model_mb: float = DEFAULT_MAX_MODEL_MB,
    max_predict_ms: float | None = None,
    on: str = "local",
) -> dict[str, Any]:
    """AutoML on the dataset version's frozen split; the best model is logged on the run
    (with its package size and measured one-row latency among the step's metrics).
    ``on: ray`` runs the trials on the worker's Ray cluster (``worker.executor``'s address,
    else a Ray instance of the step's own)."""
    from loopml.core.executors import RayExecutorConfig
    from loopml.train.options import SearchOptions, TrainingData, TrainOptions
    from loopml.train.service import train

    executor = ctx.settings.worker.executor
    search = SearchOptions(
        budget_s=budget_s,
        metric=metric,
        seed=seed,
        estimators=estimators,
        max_iter=max_iter,
        max_model_mb=max_model_mb,
        max_predict_ms=max_predict_ms,
        on=on,
        ray_address=executor.address if isinstance(executor, RayExecutorConfig) else None,
    )
    options = TrainOptions(
        data=TrainingData(dataset=dataset, target=target, task=task),
        search=search,
        experiment=experiment,
    )
    outcome = train(
        _access(ctx),
        options,
        on_trial=lambda t: ctx.log.info("trial %d: %s", t.iteration, t.estimator),
    )
    ctx.log.info("run %s: %s, best %s", outcome.run_id, outcome.best_estimator, outcome.best_score)
    return _outputs(outcome)


def train_custom(
    ctx: StepContext,
    dataset: str | None = None,
    target: str | None = None,
    task: str | None = None,
    entrypoint: str | None = None,
    params: dict[str, Any] | None = None,
    experiment: str | None = None,
    codeset: str | None = None,
) -> dict[str, Any]:
    """Your ``fit(ctx)``; a retry resumes from the last checkpoint the failed attempt saved.
    With ``codeset``, that codeset version's entry point instead (``train_codeset``)."""
    from loopml.core.errors import ValidationError
    from loopml.train.options import TrainingData, TrainOptions
    from loopml.train.service import train

    if codeset is not None:
        if entrypoint is not None:
            raise ValidationError("train_custom takes an entrypoint or a codeset, not both")
        from loopml.pipelines.builtins.codeset import train_codeset

        return train_codeset(ctx, codeset, params=params, experiment=experiment)
    if dataset is None or target is None or task is None or entrypoint is None:
        raise ValidationError("train_custom needs dataset, target, task and entrypoint")
    options = TrainOptions(
        data=TrainingData(dataset=dataset, target=target, task=task),
        entrypoint=entrypoint,
        params=params or {},
        experiment=experiment,
    )
    outcome = train(_access(ctx), options)
    return _outputs(outcome)
