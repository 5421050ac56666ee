"""What every ``delete`` command that asks first shares: ``--yes``, the question, the client
and the one line that says what went."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from loopml.cli._context import state
from loopml.cli._output import console

if TYPE_CHECKING:
    from loopml.client import Client

YES = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")


@contextmanager
def deleting(
    ctx: typer.Context, yes: bool, question: str, noun: str, name: str
) -> Iterator[Client]:
    """The client to delete ``name`` with, once ``question`` is answered yes (or ``--yes``
    skips it; no aborts); ``deleted <noun> <name>`` is printed when the block succeeds."""
    if not yes:
        typer.confirm(question, abort=True)
    with state(ctx).client() as client:
        yield client
    console.print(f"deleted {noun} [bold]{name}[/]")
