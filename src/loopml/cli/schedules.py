"""``loopml schedules``: start pipelines at the ticks of a cron expression in a time zone."""

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
from loopml.cli._output import console, when

if TYPE_CHECKING:
    from loopml.core.automation import Schedule

app = typer.Typer(help="Schedules: cron-started pipeline runs.", no_args_is_help=True)

NAME = typer.Argument(..., help="The schedule's name.")
INPUTS = typer.Option([], "--input", "-i", help="NAME=VALUE for each run (repeatable).")
POLICY = typer.Option(
    "skip", "--concurrency", help="While its run is active: skip, or queue one more."
)


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


def _row(s: Schedule) -> tuple[Any, ...]:
    return (
        s.name,
        s.pipeline,
        s.cron,
        s.timezone,
        "yes" if s.enabled else "paused",
        when(s.next_fire_at) if s.next_fire_at and s.enabled else "-",
        s.last_run_id or "",
    )


# Alike in shape to triggers.py's, not one piece: each noun's ``create`` has its own options
# and fields (a cron and its zone here), and what the two share is add_shared_commands's.
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
    print_one(made, json_out, _show)


add_shared_commands(
    app,
    noun="schedule",
    resource=lambda client: client.schedules,
    show=_show,
    listing=(
        "List schedules with their next tick.",
        ["schedule", "pipeline", "cron", "zone", "enabled", "next", "last run"],
        _row,
    ),
    pause_help="Stop firing until resumed.",
    resume_help="Fire again from the next tick (missed ticks are not caught up).",
)
