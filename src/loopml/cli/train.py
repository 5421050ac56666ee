"""``loopml train``: AutoML or your own ``fit(ctx)`` on a dataset snapshot, tracked,
registered and evaluated."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

import typer

from loopml.cli._context import project_option, settings, state
from loopml.cli._heartbeat import heartbeat, interval_for
from loopml.cli._output import as_json, console, table
from loopml.core.errors import UserCodeError, ValidationError
from loopml.core.executors import RayExecutorConfig
from loopml.train.options import (
    DEFAULT_BUDGET_S,
    DEFAULT_MAX_MODEL_MB,
    Checkpointing,
    FinetuneOptions,
    Registration,
    SearchOptions,
    TextTrainOptions,
    TrainingData,
    TrainOptions,
)

if TYPE_CHECKING:
    from loopml.sdk.training import TrainOutcome
    from loopml.train.automl import Trial


def _params(items: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError(f"expected --param KEY=VALUE, got {item!r}")
        try:
            found[key] = json.loads(value)
        except json.JSONDecodeError:
            found[key] = value
    return found


# Typer reads each option from a parameter of the command function, so the command keeps its
# parameters; it builds the TrainOptions (``loopml.train.options``) the SDK and the training
# service share at once, and hands only that on.
def train(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", "-d", help="NAME[@VERSION] with a split."),
    target: str = typer.Option(..., "--target", "-y", help="The column to predict."),
    task: str = typer.Option(
        ...,
        "--task",
        help="classification, regression, text-classification or text-regression "
        "(a text column: docs/text.md).",
    ),
    budget: float = typer.Option(DEFAULT_BUDGET_S, "--budget", help="AutoML's budget in seconds."),
    metric: str | None = typer.Option(None, "--metric", help="AutoML's search metric."),
    seed: int = typer.Option(
        0, "--seed", help="AutoML's seed; a fine-tune's data order and initialisation."
    ),
    estimators: str | None = typer.Option(
        None, "--estimators", help="Comma-separated learners (lgbm,rf,extra_tree,lrl1|enet)."
    ),
    max_iter: int | None = typer.Option(None, "--max-iter", min=1, help="Cap AutoML's trials."),
    max_model_mb: float = typer.Option(
        DEFAULT_MAX_MODEL_MB,
        "--max-model-mb",
        min=0.001,
        help="AutoML: the largest model package, in MB.",
    ),
    max_predict_ms: float | None = typer.Option(
        None,
        "--max-predict-ms",
        help="AutoML: the longest one-row latency on the model server, in ms (> 0).",
    ),
    keep_columns: str | None = typer.Option(
        None,
        "--keep-columns",
        help="AutoML: comma-separated columns to use even though they look like identifiers.",
    ),
    n_jobs: int | None = typer.Option(
        None, "--n-jobs", help="AutoML's threads (-1: every core; default: the idle cores)."
    ),
    bagging: bool = typer.Option(
        False,
        "--bagging/--no-bagging",
        help="AutoML: a cross-validated winner is its 5 fold models averaged, where the bag "
        "fits the limits and the budget, instead of one refit on every row (default: refit).",
    ),
    on: str = typer.Option(
        "local",
        "--on",
        help="Where AutoML's trials run: local (this process) or ray (tasks of 1 CPU on a Ray "
        "cluster, as many at a time as it has CPUs; needs loopml[ray]).",
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="With --on ray: the cluster's head, host:port (default: worker.executor's "
        "address, else what ray.init() finds, else a Ray instance of this command's own).",
    ),
    entrypoint: str | None = typer.Option(
        None, "--entrypoint", help="Custom training: module:function called as fit(ctx)."
    ),
    param: list[str] = typer.Option([], "--param", help="KEY=VALUE for ctx.params (repeat)."),
    checkpoint_key: str | None = typer.Option(
        None, "--checkpoint-key", help="What identifies this training for resuming."
    ),
    register: str | None = typer.Option(
        None, "--register", help="Register the model as a new version of this model."
    ),
    experiment: str | None = typer.Option(None, "--experiment", help="Default: the dataset."),
    project: str = project_option("The project."),
    json_out: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
    text_column: str | None = typer.Option(None, "--text-column", help="Text tasks: the texts."),
    method: str = typer.Option(
        TextTrainOptions.method,
        "--method",
        help="Text tasks: auto, finetune or embeddings (see docs/text.md).",
    ),
    base: str | None = typer.Option(
        None, "--base", help="Text tasks: the weights, a model folder or package:NAME."
    ),
    epochs: int = typer.Option(
        FinetuneOptions.epochs, "--epochs", min=1, help="Fine-tuning's epochs."
    ),
    batch_size: int = typer.Option(
        FinetuneOptions.batch_size, "--batch-size", min=1, help="Fine-tuning's batch."
    ),
    checkpoint_every: int = typer.Option(
        Checkpointing.every_steps,
        "--checkpoint-every",
        min=0,
        help="Fine-tuning: checkpoint every N steps.",
    ),
    checkpoint_seconds: float = typer.Option(
        Checkpointing.every_s,
        "--checkpoint-seconds",
        min=0,
        help="Fine-tuning: checkpoint every S seconds.",
    ),
    spot: bool = typer.Option(
        Checkpointing.spot, "--spot", help="Fine-tuning: SIGTERM checkpoints, stops."
    ),
) -> None:
    """Train a model on a dataset snapshot's frozen split; with --register, add it to the
    registry and score it on the frozen eval set (what `loopml models gate` judges)."""
    # --budget counts from here: the command's imports and the client are in it, the
    # interpreter's start is not (a process's start would be wrong where the command runs
    # inside a longer-lived one, as under a test runner).
    started = time.monotonic()
    params = _params(param)
    if task.startswith("text-"):
        params = {
            "text_column": text_column,
            "method": method,
            "base": base,
            "epochs": epochs,
            "batch_size": batch_size,
            "checkpoint_every_steps": checkpoint_every,
            "checkpoint_every_s": checkpoint_seconds,
            "spot": spot,
        } | params
    options = TrainOptions(
        data=TrainingData(dataset=dataset, target=target, task=task),
        search=SearchOptions(
            budget_s=budget,
            metric=metric,
            seed=seed,
            estimators=estimators.split(",") if estimators else None,
            max_iter=max_iter,
            n_jobs=n_jobs,
            max_model_mb=max_model_mb,
            max_predict_ms=max_predict_ms,
            keep_columns=tuple(c.strip() for c in keep_columns.split(",")) if keep_columns else (),
            bagging=bagging,
            on=on,
            ray_address=_ray_address(ray_address) if on == "ray" else None,
        ),
        entrypoint=entrypoint,
        params=params,
        checkpoint_key=checkpoint_key,
        registration=Registration(register) if register is not None else None,
        experiment=experiment,
    )
    _run(ctx, options, project, json_out, started)


def _ray_address(given: str | None) -> str | None:
    """The cluster ``--on ray`` joins: the one given, else the worker's (``worker.executor``
    of type ``ray``), as ``loopml predict --on ray`` and the worker find it."""
    if given is not None:
        return given
    executor = settings().worker.executor
    return executor.address if isinstance(executor, RayExecutorConfig) else None


def _run(
    ctx: typer.Context, options: TrainOptions, project: str, json_out: bool, started: float
) -> None:
    """Train with a progress bar (a terminal) or heartbeats (none), then report."""
    from loopml.sdk.training import train_with

    client = state(ctx).client()
    task, budget, entrypoint = options.data.task, options.search.budget_s, options.entrypoint
    best: list[float] = []
    quiet = json_out or not sys.stderr.isatty() or task.startswith("text-")
    progress = None
    task_id = None
    if entrypoint is None and not quiet:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(
            TextColumn("[bold]AutoML[/]"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=True,
        )
        task_id = progress.add_task("search", total=budget, status="starting")
        progress.start()

    state_now: dict[str, Any] = {}

    def describe(elapsed: float) -> str:
        if task.startswith("text-"):
            method = options.params.get("method")
            return f"training: {elapsed:.0f} s elapsed ({task}, --method {method})"
        if entrypoint is not None:
            return f"training: {elapsed:.0f} s elapsed (your fit(ctx) is running)"
        if elapsed > budget + 1:
            return (
                f"training: {elapsed:.0f} s elapsed, search done: "
                "final fit (bag or refit), package, register"
            )
        found = state_now.get("trial")
        status = (
            f"{found.iteration} trials, best {found.best_estimator} {found.best_score:.4f}"
            if found is not None
            else "preparing the data"
        )
        return f"training: {elapsed:.0f} s of a {budget:g} s budget, {status}"

    def on_trial(trial: Trial) -> None:
        state_now["trial"] = trial
        best.append(trial.best_score)
        if progress is not None and task_id is not None:
            progress.update(
                task_id,
                completed=min(time.monotonic() - started, budget),
                status=f"trial {trial.iteration}, best {trial.best_estimator} "
                f"{trial.best_score:.4f}",
            )

    beats = heartbeat(describe, interval_for(budget), enabled=not sys.stderr.isatty())
    try:
        with beats:
            outcome = train_with(
                options, project=project, client=client, on_trial=on_trial, started=started
            )
    except UserCodeError as exc:
        if progress is not None:
            progress.stop()
        print(f"error in your training code: {exc.message}", file=sys.stderr)
        print(exc.details.get("traceback", ""), file=sys.stderr)
        raise typer.Exit(1) from None
    finally:
        if progress is not None:
            progress.stop()
        client.close()
    _report(outcome, json_out)


def _spend(spend: dict[str, Any]) -> str:
    """``used 58.2 of 60 s, 0.97 x (search 50.1 s, ...; unused 1.8 s)``, and why the search
    stopped when it ended early (``loopml.train.budget``)."""
    skip = ("unused", "budget", "wall", "used", "stopped")
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in spend.items() if k not in skip)
    stopped = spend.get("stopped", "budget")
    why = "" if stopped == "budget" else f"; the search ended early: {stopped}"
    of = f"{spend['wall']:.1f} of {spend['budget']:g} s, " if "budget" in spend else ""
    return f"used {of}{spend['used']:.2f} x ({phases}; unused {spend['unused']:.1f} s){why}"


def _warn_identifiers(outcome: TrainOutcome) -> None:
    ids = {k: v for k, v in outcome.excluded_columns.items() if v.startswith("identifier-like")}
    for name, reason in ids.items():
        print(f"warning: column {name!r} not used, {reason}", file=sys.stderr)
    if ids:
        names = ",".join(ids)
        print(f"  (use it anyway with --keep-columns {names})", file=sys.stderr)


def _best(outcome: TrainOutcome) -> str:
    """``lgbm bagged on 5 folds (0.9912; 0.42 MB, 0.036 ms a row served)``: the winner
    (bagged or not), its score, with the package's size and its measured one-row latency
    on the model server's runtime (a client's JSON row in, ``--max-predict-ms``'s
    measure) beside it."""
    costs = []
    if outcome.package_mb is not None:
        costs.append(f"{outcome.package_mb:.2f} MB")
    if outcome.predict_ms is not None:
        costs.append(f"{outcome.predict_ms:.3f} ms a row served")
    beside = f"; {', '.join(costs)}" if costs else ""
    folds = outcome.details.get("bagged_folds")
    bagged = f" bagged on {folds} folds" if folds else ""
    return f"{outcome.best_estimator}{bagged} ({outcome.best_score:.4f}{beside})"


def _report(outcome: TrainOutcome, json_out: bool) -> None:
    _warn_identifiers(outcome)
    if json_out:
        as_json(
            {
                "run_id": outcome.run_id,
                "dataset": outcome.dataset,
                "eval_hash": outcome.eval_hash,
                "model_format": outcome.model_format,
                "version": outcome.version.version if outcome.version else None,
                "evaluation": outcome.evaluation.model_dump(mode="json")
                if outcome.evaluation
                else None,
                "best_estimator": outcome.best_estimator,
                "best_score": outcome.best_score,
                "bagged_folds": outcome.details.get("bagged_folds"),
                "trials": outcome.trials,
                "resumed_from": outcome.resumed_from,
                "elapsed_s": round(outcome.elapsed_s, 3),
                "package_mb": outcome.package_mb,
                "predict_ms": outcome.predict_ms,
                "used_columns": outcome.used_columns,
                "excluded_columns": outcome.excluded_columns,
                "budget": outcome.details.get("budget"),
            }
        )
        return
    rows: list[tuple[str, Any]] = [
        ("run", outcome.run_id),
        ("dataset", f"{outcome.dataset} (eval set {outcome.eval_hash[:12]})"),
        ("model format", outcome.model_format),
        ("elapsed", f"{outcome.elapsed_s:.1f} s"),
    ]
    if "budget" in outcome.details:
        rows.append(("budget", _spend(outcome.details["budget"])))
    if outcome.package_mb is not None:
        rows.append(("package", f"{outcome.package_mb:.2f} MB"))
    if outcome.used_columns:
        rows.append(("columns used", ", ".join(outcome.used_columns)))
    if outcome.excluded_columns:
        rows.append(("columns not used", ", ".join(outcome.excluded_columns)))
    if outcome.best_estimator:
        rows.append(("best", _best(outcome)))
        rows.append(("trials", outcome.trials))
    if outcome.resumed_from is not None:
        rows.append(("resumed from checkpoint", outcome.resumed_from))
    if outcome.version:
        rows.append(("registered", f"{outcome.version.model}/{outcome.version.version}"))
    if outcome.evaluation:
        metrics = outcome.evaluation.metrics
        rows.append(("eval", ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))))
        if outcome.evaluation.latency:
            lat = outcome.evaluation.latency
            # The registered version's, measured as served on an eval row: what the gate's
            # latency rules judge.
            rows.append(
                (
                    "eval latency",
                    f"p50 {lat.p50_ms:.3f} ms, p99 {lat.p99_ms:.3f} ms a row served "
                    "(the gate judges it)",
                )
            )
    table("trained", ["", ""], rows)
