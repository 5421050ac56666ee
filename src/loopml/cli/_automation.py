"""What ``loopml schedules`` and ``loopml triggers`` share: ``NAME=VALUE`` inputs, the
firing history table, and the ``show``, ``pause``, ``resume`` and ``delete`` commands, which
are the same for both nouns but for their words."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from loopml.cli._context import project_option, state
from loopml.cli._list_command import add_list_command
from loopml.cli._output import (
    as_json,
    console,
    table,
    when,
)

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.client.automations import AutomationResource
    from loopml.core.automation import Firing

PROJECT = project_option("The project that owns it.")
JSON = typer.Option(False, "--json", help="Print JSON instead of text.")


def inputs_of(values: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` options as a dict."""
    found: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--input")
        found[key.strip()] = value
    return found


def history_table(items: list[Firing]) -> None:
    """Firings, newest first."""
    rows = [
        (when(f.time), f.outcome, f.run_id or "", f.event_id or "", f.reason or "") for f in items
    ]
    table(None, ["time", "outcome", "run", "event", "reason"], rows)


def print_one(found: Any, json_out: bool, show: Callable[[Any], None]) -> None:
    """One schedule or trigger: as JSON, or as ``show`` prints it."""
    if json_out:
        as_json(found.model_dump(mode="json"))
    else:
        show(found)


def add_shared_commands(
    app: typer.Typer,
    *,
    noun: str,
    resource: Callable[[Client], AutomationResource[Any]],
    show: Callable[[Any], None],
    listing: tuple[str, list[str], Callable[[Any], tuple[Any, ...]]],
    pause_help: str,
    resume_help: str,
) -> None:
    """Register ``list``, ``show``, ``pause``, ``resume`` and ``delete`` on ``app``.

    Args:
        noun: ``schedule`` or ``trigger``, as the help and messages say it.
        resource: the SDK's resource for the noun (``client.schedules``).
        show: prints one of them as text.
        listing: ``list``'s help, its table's columns, and the row of one item.
        pause_help: what pausing does, for ``pause --help``.
        resume_help: what resuming does, for ``resume --help``.
    """
    name_arg = typer.Argument(..., help=f"The {noun}'s name.")
    list_help, columns, row = listing

    add_list_command(
        app,
        help=list_help,
        project_option=PROJECT,
        json_option=JSON,
        fetch=lambda client, project: resource(client).list(project),
        columns=columns,
        row=row,
    )

    @app.command("show", help=f"Show a {noun} and its recent firings.")
    def show_(
        ctx: typer.Context, name: str = name_arg, project: str = PROJECT, json_out: bool = JSON
    ) -> None:
        with state(ctx).client() as client:
            found = resource(client).get(name, project=project)
            history = resource(client).history(name, limit=20, project=project)
        if json_out:
            as_json(
                {
                    **found.model_dump(mode="json"),
                    "history": [f.model_dump(mode="json") for f in history],
                }
            )
            return
        show(found)
        history_table(history)

    def set_enabled(ctx: typer.Context, name: str, project: str, enabled: bool) -> None:
        with state(ctx).client() as client:
            found = resource(client).update(name, project=project, enabled=enabled)
        show(found)

    @app.command("pause", help=pause_help)
    def pause(ctx: typer.Context, name: str = name_arg, project: str = PROJECT) -> None:
        set_enabled(ctx, name, project, False)

    @app.command("resume", help=resume_help)
    def resume(ctx: typer.Context, name: str = name_arg, project: str = PROJECT) -> None:
        set_enabled(ctx, name, project, True)

    @app.command("delete", help=f"Delete a {noun} (the runs it started stay).")
    def delete(ctx: typer.Context, name: str = name_arg, project: str = PROJECT) -> None:
        with state(ctx).client() as client:
            resource(client).delete(name, project=project)
        console.print(f"deleted {noun} [bold]{name}[/]")
