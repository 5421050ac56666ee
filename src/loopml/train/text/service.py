"""The text training service: a text task on a dataset snapshot, tracked, packaged,
registered and evaluated like ``loopml.train.service.train`` (``loopml.train_text_model``
and ``loopml.train_model`` with a text task come here, with the access they chose).

Two methods:

- ``finetune``: a transformers encoder fine-tuned on the text column (``--base`` names the
  weights, else a small random encoder), checkpointed to the project's artifacts every N
  steps or seconds; trying the same training again resumes from the newest checkpoint. With
  ``spot=True`` a SIGTERM makes it checkpoint after the current step and stop.
- ``embeddings``: sentence embeddings from a model shipped in a Python package, with the
  AutoML search on top (the CPU default).

``auto`` fine-tunes when torch sees a GPU, else uses embeddings.
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loopml.core.errors import LoopmlError, ValidationError
from loopml.core.extras import require
from loopml.core.registry import ModelVersion, VersionStatus
from loopml.train.service import (
    CHECKPOINTS_PREFIX,
    Searched,
    SearchOptions,
    TrainingAccess,
    TrainOutcome,
    _fail,
    automl_budget,
    package_mb,
)
from loopml.train.tracking.active import ActiveRun, start_run_on

if TYPE_CHECKING:
    from loopml.core.gate import EvaluationReport
    from loopml.core.runs import LoggedModel
    from loopml.packaging import ModelPackage
    from loopml.train.automl import Trial
    from loopml.train.options import Checkpointing, Registration, TextTrainOptions
    from loopml.train.text import FinetuneSpec, StopFlag

Method = Literal["auto", "finetune", "embeddings"]
TEXT_TRAINING_MODULES = ("torch", "transformers", "tokenizers")
"""What both methods import (the ``text`` extra)."""


def pick_method(method: str) -> Literal["finetune", "embeddings"]:
    """``finetune`` or ``embeddings``; ``auto`` fine-tunes only when there is a GPU."""
    if method == "finetune":
        return "finetune"
    if method == "embeddings":
        return "embeddings"
    if method != "auto":
        raise ValidationError(
            f"invalid method {method!r}: expected 'auto', 'finetune' or 'embeddings'",
            details={"field": "method"},
        )
    try:
        import torch
    except ImportError:
        return "embeddings"
    return "finetune" if torch.cuda.is_available() else "embeddings"


_OPTIONS = frozenset(
    {
        "text_column",
        "method",
        "base",
        "epochs",
        "batch_size",
        "learning_rate",
        "max_length",
        "checkpoint_every_steps",
        "checkpoint_every_s",
        "spot",
        "device",
        "tiny",
        "estimators",
    }
)
# AutoML's options the embeddings method takes besides ``estimators``; fine-tuning refuses
# them (``_refuse_search``).
_SEARCH = ("metric", "n_jobs", "max_model_mb")


def text_options(params: Mapping[str, Any], *, search: bool = False) -> dict[str, Any]:
    """``train_model``'s params for a text task, checked against ``train_text_model``'s options.

    ``search`` also allows ``budget_s``, ``max_iter``, ``seed``, ``metric``, ``n_jobs`` and
    ``max_model_mb`` (``train_model`` passes those itself; the ``train_text`` pipeline step
    takes them as params).

    Raises:
        ValidationError: an option ``train_text_model`` does not take.
    """
    allowed = _OPTIONS | {"budget_s", "max_iter", "seed", *_SEARCH} if search else _OPTIONS
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValidationError(
            f"unknown text training options {unknown}: expected some of {sorted(allowed)}",
            details={"field": "params"},
        )
    return dict(params)


@contextlib.contextmanager
def spot_signals(stop: StopFlag, enabled: bool) -> Iterator[None]:
    """With ``enabled``, SIGTERM sets ``stop`` (the loop checkpoints and stops) instead of
    killing the process; the previous handler comes back afterwards."""
    if not enabled:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        stop.requested = True

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def log_package(run: ActiveRun, package: ModelPackage, path: str = "model") -> LoggedModel:
    """Upload a written package's files under ``path`` and record it on the run."""
    for file in sorted(package.path.iterdir()):
        run._backend.upload(run.id, f"{path}/{file.name}", file)
    manifest = package.manifest
    return run._backend.record_model(
        run.id,
        path=path,
        flavor=manifest.flavor,
        format=manifest.primary,
        manifest_sha256=package.manifest_sha256,
        signature=manifest.signature.model_dump(mode="json"),
        summary={
            "parity": manifest.parity.model_dump(mode="json") if manifest.parity else None,
            "onnx_error": None,
            "size_bytes": sum(f.size for f in manifest.files.values()),
        },
    )


def train_text(
    access: TrainingAccess,
    options: TextTrainOptions,
    *,
    on_trial: Callable[[Trial], None] | None = None,
) -> TrainOutcome:
    """Train a text model on a dataset version's frozen split; track, package, register,
    evaluate.

    Args:
        access: where the dataset is read and the run, package and version recorded.
        options: what to train (``TextTrainOptions``, each option as
            ``loopml.train_text_model`` documents it). The embeddings method's budget
            covers the whole call, embedding the texts included.
        on_trial: called with each trial of the embeddings method's AutoML search.

    Raises:
        ValidationError: bad arguments, a failed parity check.
        ConfigurationError: the ``text`` extra is not installed.
        TrainingInterrupted: spot mode got SIGTERM (a checkpoint was saved).
    """
    from loopml.train.text import TEXT_TASKS, pick_text_column
    from loopml.train.text._data import base_task

    started = time.monotonic()
    dataset, target, task = options.data.dataset, options.data.target, options.data.task
    if task not in TEXT_TASKS:
        raise ValidationError(f"invalid text task {task!r}: expected one of {list(TEXT_TASKS)}")
    refuse_for_text(
        entrypoint=None,
        keep_columns=list(options.search.keep_columns),
        max_predict_ms=options.search.max_predict_ms,
    )
    chosen = pick_method(options.method)
    search = options.search
    if chosen == "finetune":
        _refuse_search(search)
    require(TEXT_TRAINING_MODULES, extra="text", purpose=f"training a text model ({chosen})")
    frames = access.frames(dataset)
    if target not in frames.train.columns:
        raise ValidationError(
            f"dataset {frames.label} has no column {target!r}", details={"field": "target"}
        )
    column = pick_text_column(frames.train, target, options.text_column)
    base, registration = options.base, options.registration
    run = start_run_on(
        access.backend,
        options.experiment or frames.label.split("@")[0],
        name=f"train-text-{chosen}",
        params={
            "target": target,
            # The registry's evaluation reads the model's task from here.
            "task": base_task(task),  # type: ignore[arg-type]
            "text_task": task,
            "dataset": frames.label,
            "eval_hash": frames.eval_hash,
            "trainer": f"text-{chosen}",
            "text_column": column,
            "base": base or "",
        },
        inputs=[frames.label],
    )
    details: dict[str, Any] = {"method": chosen, "text_column": column}
    resumed = None
    # The search's columns are the embedding's: the outcome names the dataset's instead.
    unused = [c for c in frames.train.columns if c not in (column, target)]
    searched = Searched(
        used_columns=[column],
        excluded_columns=dict.fromkeys(unused, "not the text column, the one a text task reads"),
    )
    try:
        with tempfile.TemporaryDirectory(prefix="loopml-text-") as tmp:
            if chosen == "finetune":
                spec = _spec(task, column, target, options)
                package, resumed, extra = _finetune(
                    run, access, spec, frames, Path(tmp), options.checkpoints
                )
            else:
                from loopml.train.text._embed_method import embeddings_package

                def budget() -> float:
                    return automl_budget(
                        search.budget_s, started, registering=registration is not None
                    )

                package, extra, found = embeddings_package(
                    run, frames, task, column, target, base, budget, Path(tmp), search, on_trial
                )
                searched = replace(
                    found,
                    used_columns=searched.used_columns,
                    excluded_columns=searched.excluded_columns,
                )
                details.update(searched.details)
            details.update(extra)
            logged = log_package(run, package)
    except BaseException as exc:
        _fail(run, exc)
        raise
    run.end("FINISHED")
    version, evaluation = _register(access, registration, run.id, frames.label)
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
        used_columns=searched.used_columns,
        excluded_columns=searched.excluded_columns,
    )


def _refuse_search(options: SearchOptions) -> None:
    """Fine-tuning has no AutoML search: an option for one is refused, not dropped."""
    unset = SearchOptions()  # max_model_mb has a default (50 MB): only another is "given"
    given = [
        name
        for name in ("estimators", "max_iter", *_SEARCH)
        if getattr(options, name) not in (None, getattr(unset, name))
    ]
    if given:
        raise ValidationError(
            f"{', '.join(given)} set the embeddings method's AutoML search, and fine-tuning "
            "trains the encoder end to end with no search: drop them, or use method "
            "'embeddings' (--method embeddings)",
            details={"field": given[0]},
        )


def refuse_for_text(
    *, entrypoint: str | None, keep_columns: list[str] | None, max_predict_ms: float | None = None
) -> None:
    """``train_model``'s options that a text task cannot honour, refused with the reason.

    Raises:
        ValidationError: ``entrypoint``, ``keep_columns`` or ``max_predict_ms`` was given.
    """
    if entrypoint is not None:
        raise ValidationError(
            "entrypoint (custom training) does not combine with a text task, which trains "
            "with method 'finetune' or 'embeddings': use task 'classification' or "
            "'regression' with your fit(ctx), which gets the text column in ctx.train",
            details={"field": "entrypoint"},
        )
    if keep_columns:
        raise ValidationError(
            "keep_columns chooses tabular AutoML's columns, and a text task reads only its "
            "text column: drop it, and name the column with text_column (--text-column)",
            details={"field": "keep_columns"},
        )
    if max_predict_ms is not None:
        raise ValidationError(
            "max_predict_ms limits tabular AutoML's models (estimated per trial, measured on "
            "the package); a text model's latency is its encoder's, which it does not "
            "estimate: drop it for a text task",
            details={"field": "max_predict_ms"},
        )


def _register(
    access: TrainingAccess, registration: Registration | None, run_id: str, dataset: str
) -> tuple[ModelVersion | None, EvaluationReport | None]:
    if registration is None:
        return None, None
    model = registration.model
    version = access.register(model, run_id, registration.description)
    if version.status != VersionStatus.READY:
        raise LoopmlError(
            f"version {version.version} of {model!r} failed registration: {version.status_message}"
        )
    return version, access.evaluate(model, version.version, dataset)


def _spec(task: Any, column: str, target: str, options: TextTrainOptions) -> FinetuneSpec:
    from loopml.train.text import FinetuneSpec, LoopConfig
    from loopml.train.text._base import TinyShape

    tune, checkpoints, base = options.finetune, options.checkpoints, options.base
    if tune.epochs < 1 or tune.batch_size < 1 or not 2 <= tune.max_length <= 512:
        raise ValidationError("epochs and batch_size are at least 1, max_length 2 to 512")
    if checkpoints.every_steps < 0 or checkpoints.every_s < 0:
        raise ValidationError("checkpoint cadences are 0 (off) or positive")
    rate = tune.learning_rate if tune.learning_rate is not None else (5e-5 if base else 3e-3)
    loop = LoopConfig(
        epochs=tune.epochs,
        batch_size=tune.batch_size,
        learning_rate=rate,
        seed=options.search.seed,
        checkpoint_every_steps=checkpoints.every_steps,
        checkpoint_every_s=checkpoints.every_s,
        device=tune.device,
    )
    try:
        shape = TinyShape(**(tune.tiny or {}))
    except TypeError as exc:
        raise ValidationError(f"invalid tiny shape {tune.tiny}: {exc}") from exc
    return FinetuneSpec(
        task=task,
        text_column=column,
        target=target,
        base=base,
        max_length=tune.max_length,
        loop=loop,
        tiny=shape,
    )


def _finetune(
    run: ActiveRun,
    access: TrainingAccess,
    spec: FinetuneSpec,
    frames: Any,
    workdir: Path,
    checkpoints: Checkpointing,
) -> tuple[ModelPackage, int | None, dict[str, Any]]:
    from loopml.train.text import StopFlag, finetune

    key = checkpoints.key or spec.identity(frames.label)
    if not key.replace("-", "").replace("_", "").isalnum() or len(key) > 64:
        raise ValidationError("a checkpoint key is 1 to 64 letters, digits, '-' or '_'")
    run.set_tags({"loopml.checkpoint_key": key})
    store = access.checkpoints()
    prefix = f"{CHECKPOINTS_PREFIX}/{key}"
    stop = StopFlag()

    def on_step(step: int, loss: float) -> None:
        run.log_metric("train.loss", loss, step=step)

    with spot_signals(stop, checkpoints.spot):
        result = finetune(
            spec,
            frames.train,
            store=store,
            prefix=prefix,
            workdir=workdir,
            stop=stop,
            on_step=on_step,
        )
    if result.loop.resumed_from is not None:
        run.set_tags({"loopml.resumed_from_step": str(result.loop.resumed_from)})
    run.log_metric("train.seconds", result.loop.seconds)
    from loopml.train.text._checkpoints import Checkpointer

    Checkpointer(store, prefix, workdir).clear()
    extra = {
        "steps": result.loop.total_steps,
        "device": result.loop.device,
        "checkpoints_saved": result.checkpoints_saved,
        "final_loss": result.loop.losses[-1] if result.loop.losses else None,
    }
    return result.package, result.loop.resumed_from, extra
