"""Printing for the CLI: tables, JSON, and the one-line error."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def when(value: datetime) -> str:
    """A timestamp as the CLI shows it: local time to the second."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows as a Rich table (``-`` for empty cells)."""
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*("-" if cell in (None, "") else str(cell) for cell in row))
    console.print(out)


def as_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout, for scripts (no colour, no wrapping)."""
    print(json.dumps(data, indent=2, default=str))
