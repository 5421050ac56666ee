"""``loopml triggers``: start pipelines on events (new rows, drift, a registered model
version, a failed gate) or on a call to a webhook."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from loopml.cli._context import state
from loopml.cli._output import as_json, console, table, when
from loopml.cli.schedules import history_table, inputs_of

if TYPE_CHECKING:
    from loopml.core.automation import Trigger

app = typer.Typer(help="Triggers: event- and webhook-started pipeline runs.", no_args_is_help=True)

PROJECT = typer.Option("default", "--project", "-p", help="The project that owns it.")
JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
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


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = NAME,
    pipeline: str = typer.Option(..., "--pipeline", help="The pipeline to run."),
    on: str = typer.Option(
        ...,
        "--on",
        help="table.appended, drift.detected, model.version.registered, gate.failed or webhook.",
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
    if json_out:
        as_json(made.model_dump(mode="json"))
    else:
        _show(made)


@app.command("list")
def list_triggers(ctx: typer.Context, project: str = PROJECT, json_out: bool = JSON) -> None:
    """List triggers."""
    with state(ctx).client() as client:
        items = client.triggers.list(project)
    if json_out:
        as_json([t.model_dump(mode="json") for t in items])
        return
    rows = [
        (
            t.name,
            t.pipeline,
            t.on,
            ", ".join(f"{k}={v}" for k, v in t.where.items()),
            t.min_rows or "",
            "yes" if t.enabled else "paused",
            t.last_run_id or "",
        )
        for t in items
    ]
    table(None, ["trigger", "pipeline", "on", "where", "min rows", "enabled", "last run"], rows)


@app.command("show")
def show(
    ctx: typer.Context, name: str = NAME, project: str = PROJECT, json_out: bool = JSON
) -> None:
    """Show a trigger and its recent firings."""
    with state(ctx).client() as client:
        found = client.triggers.get(name, project=project)
        history = client.triggers.history(name, limit=20, project=project)
    if json_out:
        as_json(
            {
                **found.model_dump(mode="json"),
                "history": [f.model_dump(mode="json") for f in history],
            }
        )
        return
    _show(found)
    history_table(history)


def _set(ctx: typer.Context, name: str, project: str, enabled: bool) -> None:
    with state(ctx).client() as client:
        found = client.triggers.update(name, project=project, enabled=enabled)
    _show(found)


@app.command("pause")
def pause(ctx: typer.Context, name: str = NAME, project: str = PROJECT) -> None:
    """Stop reacting until resumed."""
    _set(ctx, name, project, False)


@app.command("resume")
def resume(ctx: typer.Context, name: str = NAME, project: str = PROJECT) -> None:
    """React again, to events appended from now on."""
    _set(ctx, name, project, True)


@app.command("delete")
def delete(ctx: typer.Context, name: str = NAME, project: str = PROJECT) -> None:
    """Delete a trigger (the runs it started stay)."""
    with state(ctx).client() as client:
        client.triggers.delete(name, project=project)
    console.print(f"deleted trigger [bold]{name}[/]")


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
