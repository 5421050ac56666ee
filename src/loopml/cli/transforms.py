"""``loopml transforms``."""

from __future__ import annotations

import typer

app = typer.Typer(help="A project's transforms.", no_args_is_help=True)
