"""``loopml events``"""

from __future__ import annotations

import itertools
from datetime import datetime

import typer

from loopml.cli._context import state
from loopml.cli._output import as_json, table, when


def events(
    ctx: typer.Context,
    type_: str | None = typer.Option(
        None, "--type", "-t", help="Exact type, or a prefix such as 'project.*'."
    ),
    project: str | None = typer.Option(None, "--project", "-p", help="Only this project."),
    since: datetime | None = typer.Option(None, "--since", help="ISO time, inclusive."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=100_000, help="At most N."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show the event feed, oldest first."""
    with state(ctx).client() as client:
        feed = client.events.iter(type=type_, project=project, since=since)
        items = list(itertools.islice(feed, limit))
    if json_out:
        as_json([e.model_dump(mode="json") for e in items])
        return
    rows = [(e.id, when(e.time), e.type, e.project, e.subject, e.actor) for e in items]
    table(None, ["id", "time", "type", "project", "subject", "actor"], rows)
