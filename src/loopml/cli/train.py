"""``loopml train``: AutoML or your own ``fit(ctx)`` on a dataset snapshot, tracked,
registered and evaluated."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

import typer

from loopml.cli._context import state
from loopml.cli._output import as_json, console, table
from loopml.core.errors import UserCodeError, ValidationError

if TYPE_CHECKING:
    from loopml._sdk_train import TrainOutcome
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


def train(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", "-d", help="NAME[@VERSION] with a split."),
    target: str = typer.Option(..., "--target", "-y", help="The column to predict."),
    task: str = typer.Option(..., "--task", help="classification or regression."),
    budget: float = typer.Option(60.0, "--budget", help="AutoML's budget in seconds."),
    metric: str | None = typer.Option(None, "--metric", help="AutoML's search metric."),
    seed: int = typer.Option(0, "--seed", help="AutoML's seed."),
    estimators: str | None = typer.Option(
        None, "--estimators", help="Comma-separated learners (lgbm,rf,extra_tree,lrl1|enet)."
    ),
    max_iter: int | None = typer.Option(None, "--max-iter", min=1, help="Cap AutoML's trials."),
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
    project: str = typer.Option("default", "--project", "-p"),
    json_out: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Train a model on a dataset snapshot's frozen split; with --register, add it to the
    registry and score it on the frozen eval set (what `loopml models gate` judges)."""
    from loopml._sdk_train import train_model

    client = state(ctx).client()
    started = time.monotonic()
    best: list[float] = []
    quiet = json_out or not sys.stderr.isatty()
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

    def on_trial(trial: Trial) -> None:
        best.append(trial.best_score)
        if progress is not None and task_id is not None:
            progress.update(
                task_id,
                completed=min(time.monotonic() - started, budget),
                status=f"trial {trial.iteration}, best {trial.best_estimator} "
                f"{trial.best_score:.4f}",
            )

    try:
        outcome = train_model(
            dataset,
            target=target,
            task=task,
            budget_s=budget,
            metric=metric,
            seed=seed,
            estimators=estimators.split(",") if estimators else None,
            max_iter=max_iter,
            entrypoint=entrypoint,
            params=_params(param),
            checkpoint_key=checkpoint_key,
            register_as=register,
            experiment=experiment,
            project=project,
            client=client,
            on_trial=on_trial,
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


def _report(outcome: TrainOutcome, json_out: bool) -> None:
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
                "trials": outcome.trials,
                "resumed_from": outcome.resumed_from,
                "elapsed_s": round(outcome.elapsed_s, 3),
            }
        )
        return
    rows: list[tuple[str, Any]] = [
        ("run", outcome.run_id),
        ("dataset", f"{outcome.dataset} (eval set {outcome.eval_hash[:12]})"),
        ("model format", outcome.model_format),
        ("elapsed", f"{outcome.elapsed_s:.1f} s"),
    ]
    if outcome.best_estimator:
        rows.append(("best", f"{outcome.best_estimator} ({outcome.best_score:.4f})"))
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
            rows.append(("latency", f"p50 {lat.p50_ms:.3f} ms, p99 {lat.p99_ms:.3f} ms"))
    table("trained", ["", ""], rows)
