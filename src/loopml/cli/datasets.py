"""``loopml datasets``."""

from __future__ import annotations

import typer

app = typer.Typer(help="A project's datasets.", no_args_is_help=True)
