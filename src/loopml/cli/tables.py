"""``loopml tables`` and ``loopml ingest``: lake tables, and files into them."""

from __future__ import annotations

from pathlib import Path

import typer

from loopml.cli._context import state
from loopml.cli._output import as_json, console, table, when
from loopml.cli.artifacts import _bar

app = typer.Typer(help="List, inspect and delete a project's lake tables.", no_args_is_help=True)

PROJECT = typer.Option("default", "--project", "-p", help="The project that owns the table.")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


@app.command("list")
def list_tables(ctx: typer.Context, project: str = PROJECT, json_out: bool = JSON) -> None:
    """List tables with their version and row count."""
    with state(ctx).client() as client:
        items = client.tables.list(project)
    if json_out:
        as_json([t.model_dump(mode="json") for t in items])
        return
    rows = [(t.name, t.version, t.row_count, len(t.columns), when(t.updated_at)) for t in items]
    table(None, ["table", "version", "rows", "columns", "updated"], rows)


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The table."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Show a table's version, row count and columns."""
    with state(ctx).client() as client:
        info = client.tables.get(project, name)
    if json_out:
        as_json(info.model_dump(mode="json"))
        return
    console.print(f"[bold]{info.name}[/]  version {info.version}, {info.row_count} rows")
    table(
        None, ["column", "type", "nullable"], [(c.name, c.type, c.nullable) for c in info.columns]
    )


@app.command("head")
def head(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The table."),
    n: int = typer.Option(10, "-n", help="How many rows (at most 1000)."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Print the first rows of a table."""
    with state(ctx).client() as client:
        rows = client.tables.head(project, name, n)
    if json_out:
        as_json(rows)
        return
    columns = list(rows[0]) if rows else []
    table(None, columns, [[str(r[c]) for c in columns] for r in rows])


@app.command("history")
def history(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The table."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """List a table's commits, newest first."""
    with state(ctx).client() as client:
        commits = client.tables.history(project, name)
    if json_out:
        as_json([c.model_dump(mode="json") for c in commits])
        return
    rows = [
        (c.version, when(c.timestamp), c.operation, c.mode or "", c.rows_added or 0)
        for c in commits
    ]
    table(None, ["version", "time", "operation", "mode", "rows added"], rows)


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The table."),
    project: str = PROJECT,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a table and all its data."""
    if not yes:
        typer.confirm(f"delete table {name!r} of project {project!r} and all its data?", abort=True)
    with state(ctx).client() as client:
        client.tables.delete(project, name)
    console.print(f"deleted table [bold]{name}[/]")


def ingest(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    table_name: str = typer.Option(..., "--table", "-t", help="The table to write to."),
    project: str = PROJECT,
    mode: str = typer.Option("append", "--mode", help="append or overwrite."),
    format: str | None = typer.Option(None, "--format", help="csv, parquet or jsonl."),
) -> None:
    """Ingest a CSV, Parquet or JSON Lines file into a table (created on first ingest)."""
    size = file.stat().st_size
    with state(ctx).client() as client, _bar(f"ingest {file.name}", size) as bar:
        commit = client.tables.ingest_file(
            project, table_name, file, mode=mode, format=format, progress=bar
        )
    console.print(
        f"ingested [bold]{commit.rows_added or 0}[/] rows into {table_name} "
        f"(version {commit.version})"
    )
