"""``loopml events``: the event feed, newest first, or followed as it grows."""

from __future__ import annotations

import itertools
import re
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import typer

from loopml.cli._context import state
from loopml.cli._output import check_output, listing, output_option, when, wide_option
from loopml.core.errors import ValidationError

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.core.types import Event

_AGO = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: an ISO 8601 time, or a duration ago such as ``10m``, ``2h``, ``7d``.

    Raises:
        ValidationError: neither.
    """
    found = _AGO.match(text.strip())
    if found:
        amount = timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
        return (now or datetime.now(UTC)) - amount
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            f"--since {text!r}: expected an ISO time (2026-05-01T12:00) or a duration ago "
            "(30s, 10m, 2h, 7d, 1w)"
        ) from None


def _line(event: Event) -> str:
    return f"{when(event.time)}  {event.type:<24} {event.project or '-':<12} {event.subject}"


def events(
    ctx: typer.Context,
    type_: str | None = typer.Option(
        None, "--type", "-t", help="Exact type, or a prefix such as 'project.*'."
    ),
    project: str | None = typer.Option(None, "--project", "-p", help="Only this project."),
    since: str | None = typer.Option(
        None, "--since", help="ISO time, or a duration ago: 30s, 10m, 2h, 7d."
    ),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=100_000, help="At most N."),
    actor: str | None = typer.Option(
        None, "--actor", help="Only this actor's events ('user:ada' includes its tokens)."
    ),
    oldest_first: bool = typer.Option(False, "--oldest-first", help="Oldest first."),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Print the last N, then new events as they come (Ctrl-C)."
    ),
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show the event feed, newest first (or follow it)."""
    shape = check_output("json" if json_out else output, wide)
    start = parse_since(since) if since else None
    with state(ctx).client() as client:
        if follow:
            _follow(client, type_, project, start, limit)
            return
        feed = client.events.iter(
            type=type_, project=project, since=start, newest_first=not oldest_first, actor=actor
        )
        items = list(itertools.islice(feed, limit))
    rows = [(when(e.time), e.type, e.subject, e.project, e.actor, e.id) for e in items]
    columns = ["time", "type", "subject", "project", "actor", "id"]
    records = [e.model_dump(mode="json") for e in items]
    listing(columns, rows, shape, required=3, records=records)


def _follow(
    client: Client, type_: str | None, project: str | None, since: datetime | None, limit: int
) -> None:
    if since is None:
        recent = client.events.list(type=type_, project=project, limit=limit, newest_first=True)
        backlog = list(reversed(recent.items))
    else:
        backlog = list(
            itertools.islice(client.events.iter(type=type_, project=project, since=since), limit)
        )
    for event in backlog:
        print(_line(event), flush=True)
    cursor = str(backlog[-1].id) if backlog else None
    try:
        while True:
            page = client.events.list(
                type=type_, project=project, since=since, cursor=cursor, limit=500
            )
            for event in page.items:
                print(_line(event), flush=True)
                cursor = str(event.id)
            if not page.next_cursor:
                time.sleep(1.0)
    except KeyboardInterrupt:
        return
