"""``loopml.train_model``: AutoML or the user's own ``fit(ctx)`` on a dataset snapshot, tracked,
packaged, registered and evaluated, from the SDK or ``loopml train``.

Training runs in the caller's process; everything it records goes to a server over HTTP
(``url=``, a ``client``, or ``LOOPML_CLIENT_URL``) or, with none, to the embedded store, as
``loopml.start_run`` does. The steps:

1. read the dataset version's frozen split (train rows, eval rows and their hash);
2. start a run with the dataset as its input and the target and task as params;
3. AutoML: each trial becomes a child run; custom: ``fit(ctx)`` inside an error boundary,
   with checkpoints that a retry resumes from;
4. package and log the model (ONNX when it exports with parity, else skops);
5. register it as the next version of ``register_as`` (when given), and have the registry
   score it on the frozen eval set: the evaluation report the gate judges.

Example:
    >>> import loopml
    >>> outcome = loopml.train_model("churn_snap@2", target="churned", task="classification",
    ...                        budget_s=60, register_as="churn")
    >>> outcome.version, outcome.evaluation.metrics["roc_auc"]
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loopml._sdk import ActiveRun, start_run_on
from loopml._sdk_backends import EmbeddedBackend, HttpBackend, TrackingBackend
from loopml.core.datasets import DatasetRef
from loopml.core.errors import LoopmlError, UserCodeError, ValidationError
from loopml.core.gate import EvaluationReport
from loopml.core.registry import ModelVersion, VersionStatus
from loopml.core.runs import parse_batch

if TYPE_CHECKING:
    import pandas as pd

    from loopml.client import Client
    from loopml.settings import Settings
    from loopml.train.automl import AutoMLResult, Trial
    from loopml.train.custom import CheckpointStore

Task = Literal["classification", "regression"]
CHECKPOINTS_PREFIX = "checkpoints"
SAMPLE_ROWS = 1000


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


@dataclass(frozen=True)
class _Frames:
    label: str
    train: pd.DataFrame
    eval: pd.DataFrame
    eval_hash: str


class _Access:
    """Datasets, registry and checkpoint storage, over HTTP or in-process."""

    def __init__(self, backend: TrackingBackend) -> None:
        self.backend = backend
        self.project = backend.project

    def frames(self, ref: str) -> _Frames:
        parsed = DatasetRef.parse(ref)
        if isinstance(self.backend, HttpBackend):
            client = self.backend.client
            version = client.datasets.version(self.project, parsed.name, parsed.version)
            if version.split is None:
                label = f"{version.dataset}@{version.version}"
                raise ValidationError(
                    f"dataset {label} has no train/eval split: freeze one first, for example "
                    f"`loopml datasets split {label} --eval 0.2 --stratify <target>`"
                )
            read = client.datasets.read
            train = read(self.project, version.dataset, version.version, "train").to_pandas()
            frame = read(self.project, version.dataset, version.version, "eval").to_pandas()
            label = f"{version.dataset}@{version.version}"
            return _Frames(label, train, frame, version.split.eval_hash)
        from loopml.train.datasets_io import training_set

        embedded = self._embedded()
        found = training_set(embedded.store, embedded.artifacts, self.project, parsed)
        return _Frames(found.eval.dataset, found.train, found.eval.frame, found.eval.eval_hash)

    def _embedded(self) -> EmbeddedBackend:
        assert isinstance(self.backend, EmbeddedBackend)
        return self.backend

    def register(self, model: str, run_id: str, description: str) -> ModelVersion:
        if isinstance(self.backend, HttpBackend):
            return self.backend.client.models.register_version(
                model, run_id=run_id, description=description, project=self.project
            )
        from loopml.registry import register_version

        embedded = self._embedded()
        return register_version(
            embedded.store,
            embedded.artifacts,
            project=self.project,
            model_name=model,
            run_id=run_id,
            description=description,
            actor="sdk",
        )

    def evaluate(self, model: str, version: int, dataset: str) -> EvaluationReport:
        if isinstance(self.backend, HttpBackend):
            stored = self.backend.client.models.evaluate(
                model, version, dataset=dataset, project=self.project
            )
            return stored.report
        from loopml.registry.evaluate import evaluate_version

        embedded = self._embedded()
        return evaluate_version(
            embedded.store,
            embedded.artifacts,
            self.project,
            model,
            version,
            actor="sdk",
            dataset=dataset,
        ).report

    def checkpoints(self) -> CheckpointStore:
        if isinstance(self.backend, HttpBackend):
            return _HttpCheckpoints(self.backend.client, self.project)
        return _EmbeddedCheckpoints(self._embedded())


class _HttpCheckpoints:
    """Checkpoints as project artifacts on a server."""

    def __init__(self, client: Client, project: str) -> None:
        self._client = client
        self._project = project

    def put(self, key: str, source: Path) -> None:
        self._client.artifacts.upload(self._project, key, source)

    def get(self, key: str, dest: Path) -> None:
        self._client.artifacts.download(self._project, key, dest)

    def keys(self, prefix: str) -> list[str]:
        return [a.key for a in self._client.artifacts.iter(self._project, prefix=prefix)]

    def delete(self, key: str) -> None:
        self._client.artifacts.delete(self._project, key)


class _EmbeddedCheckpoints:
    """Checkpoints as project artifacts in the embedded artifact store."""

    def __init__(self, backend: EmbeddedBackend) -> None:
        from loopml.core import layout
        from loopml.store import projects

        with backend.store.session() as session:
            project_id = projects.get(session, backend.project).id
        self._root = layout.project_artifacts_prefix(project_id)
        self._artifacts = backend.artifacts

    def put(self, key: str, source: Path) -> None:
        with source.open("rb") as handle:
            self._artifacts.write(f"{self._root}/{key}", iter(lambda: handle.read(1 << 20), b""))

    def get(self, key: str, dest: Path) -> None:
        dest.write_bytes(self._artifacts.read_bytes(f"{self._root}/{key}"))

    def keys(self, prefix: str) -> list[str]:
        start = len(self._root) + 1
        return [o.key[start:] for o in self._artifacts.list(f"{self._root}/{prefix}")]

    def delete(self, key: str) -> None:
        self._artifacts.delete(f"{self._root}/{key}")


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


def _backend(
    url: str | None, client: Client | None, settings: Settings | None, project: str
) -> TrackingBackend:
    from loopml._sdk import _backend as pick

    return pick(project, url, client, settings)


def train_model(
    dataset: str,
    *,
    target: str,
    task: str,
    budget_s: float = 60.0,
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
) -> TrainOutcome:
    """Train on a dataset version's frozen split; track, package, register and evaluate.

    Args:
        dataset: ``name``, ``name@latest`` or ``name@3``; the version must have a split.
        target: the column to predict.
        task: ``classification`` or ``regression``.
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

    Raises:
        UserCodeError: custom training code raised (its traceback is in the details).
        ValidationError: bad arguments, or data AutoML refuses.
        ConflictError: the dataset version has no split.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    started = time.monotonic()
    kind = _check_task(task)
    backend = _backend(url, client, settings, project)
    access = _Access(backend)
    frames = access.frames(dataset)
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
    run_params.update({f"param.{k}": v for k, v in (params or {}).items()})
    run = start_run_on(
        backend,
        experiment or frames.label.split("@")[0],
        name=f"train-{entrypoint or 'automl'}",
        params=run_params,
        inputs=[frames.label],
    )
    details: dict[str, Any] = {}
    try:
        if entrypoint is None:
            result, children = _automl(
                run, frames, target, kind, budget_s, metric, seed, estimators, max_iter, on_trial
            )
            model = result.model
            details = {"best_config": result.best_config, "metric": result.metric}
            best_estimator, best_score, trials = result.best_estimator, result.best_score, children
            resumed = None
        else:
            model, resumed = _custom(
                run, access, frames, target, entrypoint, dict(params or {}), checkpoint_key
            )
            best_estimator, best_score, trials = None, None, 0
        logged = run.log_model(model, sample=_sample(frames.train, target))
    except BaseException as exc:
        _fail(run, exc)
        raise
    run.end("FINISHED")
    version: ModelVersion | None = None
    evaluation: EvaluationReport | None = None
    if register_as is not None:
        version = access.register(register_as, run.id, description)
        if version.status != VersionStatus.READY:
            raise LoopmlError(
                f"version {version.version} of {register_as!r} failed registration: "
                f"{version.status_message}"
            )
        evaluation = access.evaluate(register_as, version.version, frames.label)
    return TrainOutcome(
        run_id=run.id,
        dataset=frames.label,
        eval_hash=frames.eval_hash,
        model_format=logged.format,
        version=version,
        evaluation=evaluation,
        best_estimator=best_estimator,
        best_score=best_score,
        trials=trials,
        resumed_from=resumed,
        elapsed_s=time.monotonic() - started,
        details=details,
    )


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


def _automl(
    run: ActiveRun,
    frames: _Frames,
    target: str,
    task: Task,
    budget_s: float,
    metric: str | None,
    seed: int,
    estimators: list[str] | None,
    max_iter: int | None,
    on_trial: Callable[[Trial], None] | None,
) -> tuple[AutoMLResult, int]:
    from loopml.train.automl import resolve_metric, result_batch, run_automl

    kind = "binary" if task == "classification" else "regression"
    if task == "classification":
        classes = frames.train[target].nunique(dropna=True)
        kind = "binary" if classes <= 2 else "multiclass"
    name, _ = resolve_metric(metric, kind)  # type: ignore[arg-type]
    children = _ChildRuns(run, run.info.experiment, name, on_trial)
    result = run_automl(
        frames.train,
        target,
        task=task,
        budget_s=budget_s,
        metric=metric,
        seed=seed,
        estimators=estimators,
        on_trial=children,
        max_iter=max_iter,
    )
    run._backend.log_batch(run.id, result_batch(result))
    return result, children.count


def _custom(
    run: ActiveRun,
    access: _Access,
    frames: _Frames,
    target: str,
    entrypoint: str,
    params: dict[str, Any],
    key: str | None,
) -> tuple[Any, int | None]:
    from loopml.train.custom import (
        TrainContext,
        call_fit,
        checkpoint_key,
        clear_checkpoints,
        load_entrypoint,
    )

    fit = load_entrypoint(entrypoint)
    key = key or checkpoint_key(entrypoint, frames.label, params)
    if not key.replace("-", "").replace("_", "").isalnum() or len(key) > 64:
        raise ValidationError("a checkpoint key is 1 to 64 letters, digits, '-' or '_'")
    store = access.checkpoints()
    prefix = f"{CHECKPOINTS_PREFIX}/{key}"
    run.set_tags({"loopml.checkpoint_key": key})
    if params:
        run.log_params(
            {k: json.dumps(v) if not isinstance(v, str) else v for k, v in params.items()}
        )
    with tempfile.TemporaryDirectory(prefix="loopml-train-") as tmp:
        work = Path(tmp) / "checkpoint"
        work.mkdir()
        ctx = TrainContext(
            train=frames.train,
            eval=frames.eval,
            target=target,
            params=params,
            run=run,
            checkpoint_dir=work,
            _store=store,
            _prefix=prefix,
            _restore_dir=Path(tmp) / "restored",
        )
        model = call_fit(fit, ctx, entrypoint)
        resumed = ctx.attempt_resumed_from
    if resumed is not None:
        run.set_tags({"loopml.resumed_from_step": str(resumed)})
    clear_checkpoints(store, prefix)
    return model, resumed
