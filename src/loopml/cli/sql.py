"""``loopml sql "SELECT ..."``"""

from __future__ import annotations

import sys
from typing import Literal

import typer

from loopml.cli._context import project_option, state
from loopml.cli._output import as_json, console, table


def sql(
    ctx: typer.Context,
    query: str = typer.Argument(
        ..., help="One read-only SELECT; tables by name (churn) or past version (churn@3)."
    ),
    project: str = project_option("The project's tables."),
    limit: int = typer.Option(100, "--limit", "-n", min=1, max=100_000, help="At most N rows."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip the first N rows."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, max=300, help="Seconds allowed."),
    format_: str = typer.Option(
        "table",
        "--output",
        "-o",
        "--format",
        "-f",
        help="table (default), json (rows as objects) or csv; -o as in every list command.",
    ),
) -> None:
    """Run read-only SQL over a project's lake tables."""
    if format_ not in ("table", "json", "csv"):
        raise typer.BadParameter(
            f"expected table, json or csv, got {format_!r}", param_hint="--output"
        )
    wire: Literal["json", "csv"] = "csv" if format_ == "csv" else "json"
    with state(ctx).client() as client:
        result = client.sql(
            project, query, limit=limit, offset=offset, timeout_s=timeout, format=wire
        )
    if format_ == "csv":
        sys.stdout.write(result.text)
    elif format_ == "json":
        as_json(result.records())
    else:
        table(None, [name for name, _ in result.columns], result.rows)
        if result.next_offset is not None:
            console.print(f"more rows: add --offset {result.next_offset}", style="dim")
