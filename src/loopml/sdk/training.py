"""``loopml.train_model``: AutoML or the user's own ``fit(ctx)`` on a dataset snapshot, tracked,
packaged, registered and evaluated, from the SDK or ``loopml train``.

Training runs in the caller's process through the training service (``loopml.train.service``,
which lists its steps); this module only picks where it records: a server over HTTP (``url=``,
a ``client``, or ``LOOPML_CLIENT_URL``) or, with none, the embedded store, as
``loopml.start_run`` does.

Example:
    >>> import loopml
    >>> outcome = loopml.train_model("churn_snap@2", target="churned", task="classification",
    ...                        budget_s=60, register_as="churn")
    >>> outcome.version, outcome.evaluation.metrics["roc_auc"]

``train_model`` builds the options once (``loopml.train.options.TrainOptions``) and hands
them to ``train_with``, which ``loopml train`` calls with the options it built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from loopml.core.errors import ValidationError
from loopml.sdk.backends import HttpAccess, HttpBackend
from loopml.train.options import (
    DEFAULT_BUDGET_S,
    DEFAULT_MAX_MODEL_MB,
    Registration,
    TrainingData,
    TrainOptions,
)
from loopml.train.search_options import SearchOptions
from loopml.train.service import TrainOutcome, train

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.settings import Settings
    from loopml.train.automl import Trial
    from loopml.train.service import TrainingAccess

__all__ = ["TrainOptions", "TrainOutcome", "train_model", "train_with"]


# The options one by one, with where to record, rather than a TrainOptions argument: this is
# the public signature users' code calls (and its docstring the one documentation that
# help(), editors and type checkers read); it builds the TrainOptions the service takes.
def train_model(
    dataset: str,
    *,
    target: str,
    task: str,
    budget_s: float = DEFAULT_BUDGET_S,
    metric: str | None = None,
    seed: int = 0,
    estimators: list[str] | None = None,
    max_iter: int | None = None,
    entrypoint: str | None = None,
    params: Mapping[str, Any] | None = None,
    checkpoint_key: str | None = None,
    register_as: str | None = None,
    description: str = "",
    experiment: str | None = None,
    project: str = "default",
    url: str | None = None,
    client: Client | None = None,
    settings: Settings | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    n_jobs: int | None = None,
    max_model_mb: float = DEFAULT_MAX_MODEL_MB,
    max_predict_ms: float | None = None,
    keep_columns: list[str] | None = None,
    bagging: bool = False,
    started: float | None = None,
    on: str = "local",
    ray_address: str | None = None,
) -> TrainOutcome:
    """Train on a dataset version's frozen split; track, package, register and evaluate.

    Args:
        dataset: ``name``, ``name@latest`` or ``name@3``; the version must have a split.
        target: the column to predict.
        task: ``classification`` or ``regression``; ``text-classification`` and
            ``text-regression`` go to ``loopml.train_text_model`` with ``params`` as its
            options, and the AutoML options below for its embeddings method
            (``entrypoint`` and ``keep_columns`` are refused there, with the reason).
        budget_s: AutoML's wall-time budget (ignored by custom training).
        metric: AutoML's search metric (by default ROC AUC, log loss or R²).
        seed: AutoML's seed.
        estimators: AutoML's learners (default: all supported).
        max_iter: cap AutoML's trials (for repeatable searches).
        entrypoint: ``module:function`` for custom training instead of AutoML.
        params: parameters for custom training (``ctx.params``), logged on the run.
        checkpoint_key: what identifies "the same training" for resuming; by default a
            hash of the entrypoint, the dataset version and the params.
        register_as: the registered model to add the trained model to as a new version.
        description: the version's description.
        experiment: the experiment (default: the dataset's name).
        project: the project.
        url, client, settings: where to record (see ``loopml.start_run``).
        on_trial: called with each AutoML trial (progress).
        n_jobs: AutoML's threads (``-1`` every core; default: the idle cores).
        max_model_mb: the largest model package AutoML may pick, in MB (50 unless given).
        max_predict_ms: the longest one-row (batch 1) latency on the model server AutoML's
            model may take, in ms: estimated per trial, measured on the package; a model
            measured over it is not registered (the call fails and says so).
        keep_columns: columns AutoML uses even though they look like identifiers.
        bagging: AutoML's cross-validated winner is its 5 fold models averaged, where the
            bag fits ``max_model_mb``, ``max_predict_ms`` and the budget, instead of one
            refit on every row.
        started: the ``time.monotonic()`` reading AutoML's budget counts from; by default
            this call's start (``loopml train`` passes its command's start).
        on: where AutoML's trials run: ``local`` (this process) or ``ray`` (tasks of 1 CPU
            on a Ray cluster, as many at a time as it has CPUs; needs ``loopml[ray]``).
        ray_address: with ``on="ray"``, the cluster's head (``host:port``); by default what
            ``ray.init()`` finds, else a Ray instance of this process's own.

    AutoML keeps the whole call within ``budget_s`` (see ``loopml.train.service.train``).

    Raises:
        UserCodeError: custom training code raised (its traceback is in the details).
        ValidationError: bad arguments, or data AutoML refuses.
        ConflictError: the dataset version has no split.
    """
    options = TrainOptions(
        data=TrainingData(dataset=dataset, target=target, task=task),
        search=SearchOptions(
            budget_s=budget_s,
            metric=metric,
            seed=seed,
            estimators=estimators,
            max_iter=max_iter,
            n_jobs=n_jobs,
            max_model_mb=max_model_mb,
            max_predict_ms=max_predict_ms,
            keep_columns=tuple(keep_columns or ()),
            bagging=bagging,
            on=on,
            ray_address=ray_address,
        ),
        entrypoint=entrypoint,
        params=dict(params or {}),
        checkpoint_key=checkpoint_key,
        registration=Registration(register_as, description) if register_as is not None else None,
        experiment=experiment,
    )
    return train_with(
        options,
        project=project,
        url=url,
        client=client,
        settings=settings,
        on_trial=on_trial,
        started=started,
    )


def train_with(
    options: TrainOptions,
    *,
    project: str = "default",
    url: str | None = None,
    client: Client | None = None,
    settings: Settings | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    started: float | None = None,
) -> TrainOutcome:
    """``train_model`` with its options built: train, track, package, register, evaluate.

    The arguments but ``options`` are ``train_model``'s, as are the errors raised.
    """
    from loopml.sdk.tracking import _backend

    if options.data.task in ("text-classification", "text-regression"):
        return _train_text(options, project, url, client, settings, on_trial)
    backend = _backend(project, url, client, settings)
    access: TrainingAccess
    if isinstance(backend, HttpBackend):
        access = HttpAccess(backend)
    else:
        from loopml.registry.embedded_training import EmbeddedAccess, EmbeddedBackend

        assert isinstance(backend, EmbeddedBackend)
        access = EmbeddedAccess(backend)
    return train(access, options, on_trial=on_trial, started=started)


def _train_text(
    options: TrainOptions,
    project: str,
    url: str | None,
    client: Client | None,
    settings: Settings | None,
    on_trial: Callable[[Trial], None] | None,
) -> TrainOutcome:
    """A text task: ``params`` as the text trainer's options, with the AutoML options for its
    embeddings method, to the text training service."""
    from loopml.sdk.text import training_access
    from loopml.train.options import TextTrainOptions
    from loopml.train.text.service import refuse_for_text, text_options, train_text

    search = options.search
    refuse_for_text(
        entrypoint=options.entrypoint,
        keep_columns=list(search.keep_columns),
        max_predict_ms=search.max_predict_ms,
    )
    # Text options (method, base, epochs, ...) come as params; see train_text_model.
    found = text_options(options.params)
    estimators = _once("estimators", search.estimators, found.pop("estimators", None))
    access = training_access(project, url, client, settings)
    text = TextTrainOptions.from_keywords(options.data, found)
    text = replace(
        text,
        checkpoints=replace(text.checkpoints, key=options.checkpoint_key),
        search=replace(search, estimators=estimators),
        registration=options.registration,
        experiment=options.experiment,
    )
    return train_text(access, text, on_trial=on_trial)


def _once(name: str, given: Any, in_params: Any) -> Any:
    """An option given as an argument or in a text task's params, not both."""
    if given is not None and in_params is not None:
        raise ValidationError(
            f"{name} is given twice, as an argument (--{name}) and in params: keep one",
            details={"field": name},
        )
    return given if given is not None else in_params
