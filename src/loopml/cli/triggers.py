"""``loopml triggers``: start pipelines on events (new rows, drift, a registered model
version, a failed gate) or on a call to a webhook."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from loopml.cli._automation import (
    JSON,
    PROJECT,
    add_shared_commands,
    inputs_of,
    print_one,
)
from loopml.cli._context import state
from loopml.cli._output import as_json, console, when

if TYPE_CHECKING:
    from loopml.core.automation import Trigger

app = typer.Typer(help="Triggers: event- and webhook-started pipeline runs.", no_args_is_help=True)

NAME = typer.Argument(..., help="The trigger's name.")


def _show(found: Trigger) -> None:
    where = ", ".join(f"{k}={v}" for k, v in found.where.items()) or "any"
    rows = f", after {found.min_rows} rows ({found.rows_pending} so far)" if found.min_rows else ""
    console.print(
        f"trigger [bold]{found.name}[/] ({found.id}) runs {found.pipeline} on {found.on} "
        f"where {where}{rows}, {'enabled' if found.enabled else 'paused'}, "
        f"concurrency {found.concurrency}",
        highlight=False,
    )
    last = when(found.last_fired_at) if found.last_fired_at else "never"
    console.print(f"last fired {last}; last run {found.last_run_id or '-'}")
    if found.secret:
        console.print(
            f"secret (shown once): {found.secret}\n"
            f"call: POST /api/v1/triggers/{found.id}/fire with header X-Loopml-Secret",
            highlight=False,
            markup=False,
        )


def _row(t: Trigger) -> tuple[Any, ...]:
    return (
        t.name,
        t.pipeline,
        t.on,
        ", ".join(f"{k}={v}" for k, v in t.where.items()),
        t.min_rows or "",
        "yes" if t.enabled else "paused",
        t.last_run_id or "",
    )


# Alike in shape to schedules.py's, not one piece: each noun's ``create`` has its own options
# and fields (an event and its filter here), and what the two share is add_shared_commands's.
@app.command("create")
def create(
    ctx: typer.Context,
    name: str = NAME,
    pipeline: str = typer.Option(..., "--pipeline", help="The pipeline to run."),
    on: str = typer.Option(
        ...,
        "--on",
        help="table.appended, drift.detected, drift.labelled (drift, once its labels are in: "
        "what a retrain waits for), quality.degraded, model.version.registered, "
        "gate.failed or webhook.",
    ),
    table_: str | None = typer.Option(None, "--table", help="Only this table's appends."),
    model: str | None = typer.Option(None, "--model", help="Only this model's events."),
    deployment: str | None = typer.Option(None, "--deployment", help="Only this deployment's."),
    min_rows: int | None = typer.Option(None, "--min-rows", min=1, help="Rows to wait for."),
    inputs: list[str] = typer.Option([], "--input", "-i", help="NAME=VALUE (repeatable)."),
    concurrency: str = typer.Option("skip", "--concurrency", help="skip, or queue one more."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Start a run of a pipeline when an event passes the filter, or its webhook is called."""
    where = {
        k: v for k, v in {"table": table_, "model": model, "deployment": deployment}.items() if v
    }
    with state(ctx).client() as client:
        made = client.triggers.create(
            name,
            pipeline=pipeline,
            on=on,
            where=where,
            min_rows=min_rows,
            inputs=inputs_of(inputs),
            concurrency=concurrency,
            project=project,
        )
    print_one(made, json_out, _show)


add_shared_commands(
    app,
    noun="trigger",
    resource=lambda client: client.triggers,
    show=_show,
    listing=(
        "List triggers.",
        ["trigger", "pipeline", "on", "where", "min rows", "enabled", "last run"],
        _row,
    ),
    pause_help="Stop reacting until resumed.",
    resume_help="React again, to events appended from now on.",
)


@app.command("fire")
def fire(
    ctx: typer.Context,
    trigger_id: str = typer.Argument(..., help="The webhook trigger's id."),
    secret: str = typer.Option(
        ..., "--secret", envvar="LOOPML_TRIGGER_SECRET", help="Its secret (or the env var)."
    ),
    json_out: bool = JSON,
) -> None:
    """Call a webhook trigger, as an outside system would."""
    with state(ctx).client() as client:
        result = client.triggers.fire(trigger_id, secret)
    if json_out:
        as_json(result)
    elif result.get("run_id"):
        console.print(f"started run [bold]{result['run_id']}[/]")
    else:
        console.print(f"{result.get('outcome')}: {result.get('skipped') or result.get('queued')}")
