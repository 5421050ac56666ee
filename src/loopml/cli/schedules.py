"""``loopml schedules``: start pipelines at the ticks of a cron expression in a time zone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from loopml.cli._context import state
from loopml.cli._output import as_json, console, table, when

if TYPE_CHECKING:
    from loopml.core.automation import Firing, Schedule

app = typer.Typer(help="Schedules: cron-started pipeline runs.", no_args_is_help=True)

PROJECT = typer.Option("default", "--project", "-p", help="The project that owns it.")
JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
NAME = typer.Argument(..., help="The schedule's name.")
INPUTS = typer.Option([], "--input", "-i", help="NAME=VALUE for each run (repeatable).")
POLICY = typer.Option(
    "skip", "--concurrency", help="While its run is active: skip, or queue one more."
)


def inputs_of(values: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` options as a dict (shared with ``loopml triggers``)."""
    found: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--input")
        found[key.strip()] = value
    return found


def history_table(items: list[Firing]) -> None:
    """Firings, newest first (shared with ``loopml triggers``)."""
    rows = [
        (when(f.time), f.outcome, f.run_id or "", f.event_id or "", f.reason or "") for f in items
    ]
    table(None, ["time", "outcome", "run", "event", "reason"], rows)


def _show(found: Schedule) -> None:
    state_ = "enabled" if found.enabled else "paused"
    console.print(
        f"schedule [bold]{found.name}[/] runs {found.pipeline} at '{found.cron}' "
        f"({found.timezone}), {state_}, concurrency {found.concurrency}",
        highlight=False,
    )
    nxt = when(found.next_fire_at) if found.next_fire_at and found.enabled else "-"
    last = when(found.last_fired_at) if found.last_fired_at else "never"
    console.print(f"next {nxt}; last fired {last}; last run {found.last_run_id or '-'}")
    if found.inputs:
        console.print(f"inputs {found.inputs}", highlight=False, markup=False)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = NAME,
    pipeline: str = typer.Option(..., "--pipeline", help="The pipeline to run."),
    cron: str = typer.Option(..., "--cron", help="Cron expression, e.g. '0 3 * * *'."),
    tz: str = typer.Option("UTC", "--tz", help="IANA time zone the cron is read in."),
    inputs: list[str] = INPUTS,
    concurrency: str = POLICY,
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Start a run of a pipeline at each tick of a cron expression."""
    with state(ctx).client() as client:
        made = client.schedules.create(
            name,
            pipeline=pipeline,
            cron=cron,
            timezone=tz,
            inputs=inputs_of(inputs),
            concurrency=concurrency,
            project=project,
        )
    if json_out:
        as_json(made.model_dump(mode="json"))
    else:
        _show(made)


@app.command("list")
def list_schedules(ctx: typer.Context, project: str = PROJECT, json_out: bool = JSON) -> None:
    """List schedules with their next tick."""
    with state(ctx).client() as client:
        items = client.schedules.list(project)
    if json_out:
        as_json([s.model_dump(mode="json") for s in items])
        return
    rows = [
        (
            s.name,
            s.pipeline,
            s.cron,
            s.timezone,
            "yes" if s.enabled else "paused",
            when(s.next_fire_at) if s.next_fire_at and s.enabled else "-",
            s.last_run_id or "",
        )
        for s in items
    ]
    table(None, ["schedule", "pipeline", "cron", "zone", "enabled", "next", "last run"], rows)


@app.command("show")
def show(
    ctx: typer.Context, name: str = NAME, project: str = PROJECT, json_out: bool = JSON
) -> None:
    """Show a schedule and its recent firings."""
    with state(ctx).client() as client:
        found = client.schedules.get(name, project=project)
        history = client.schedules.history(name, limit=20, project=project)
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
        found = client.schedules.update(name, project=project, enabled=enabled)
    _show(found)


@app.command("pause")
def pause(ctx: typer.Context, name: str = NAME, project: str = PROJECT) -> None:
    """Stop firing until resumed."""
    _set(ctx, name, project, False)


@app.command("resume")
def resume(ctx: typer.Context, name: str = NAME, project: str = PROJECT) -> None:
    """Fire again from the next tick (missed ticks are not caught up)."""
    _set(ctx, name, project, True)


@app.command("delete")
def delete(ctx: typer.Context, name: str = NAME, project: str = PROJECT) -> None:
    """Delete a schedule (the runs it started stay)."""
    with state(ctx).client() as client:
        client.schedules.delete(name, project=project)
    console.print(f"deleted schedule [bold]{name}[/]")
