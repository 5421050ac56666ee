"""``loopml transforms``: named SQL transforms that materialize lake tables."""

from __future__ import annotations

from pathlib import Path

import typer

from loopml.cli._context import project_option, state
from loopml.cli._delete import YES, deleting
from loopml.cli._output import (
    as_json,
    check_output,
    console,
    listing,
    output_option,
    table,
    when,
    wide_option,
)
from loopml.core.transforms import TransformRun, parse_table_version

app = typer.Typer(help="A project's SQL transforms.", no_args_is_help=True)

PROJECT = project_option("The project that owns the transform.")
JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
NAME = typer.Argument(..., help="The transform.")
SQL_HELP = "One SELECT over the project's tables (sales, sales@3), or @FILE to read it from a file."


def _sql(value: str | None) -> str | None:
    return None if value is None else _read_sql(value)


def _read_sql(value: str) -> str:
    if not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="--sql") from exc


def _inputs(run: TransformRun) -> str:
    return ", ".join(str(i) for i in run.inputs) or "no tables"


def _describe(run: TransformRun) -> str:
    return (
        f"{_inputs(run)} -> [bold]{run.output_table}@{run.output_version}[/], {run.rows} rows "
        f"(revision {run.revision})"
    )


@app.command("apply")
def apply(
    ctx: typer.Context,
    name: str = NAME,
    sql: str | None = typer.Option(None, "--sql", help=SQL_HELP),
    into: str | None = typer.Option(None, "--into", help="The table to write (created if new)."),
    mode: str | None = typer.Option(None, "--mode", help="overwrite (default) or append."),
    description: str | None = typer.Option(None, "--description", help="What it makes."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, max=300, help="Query seconds."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Run a transform; the first apply defines it (--sql and --into), later ones may change it.

    Without options, the saved definition runs again.
    """
    with state(ctx).client() as client:
        run = client.transforms.apply(
            project,
            name,
            sql=_sql(sql),
            into=into,
            mode=mode,
            description=description,
            timeout_s=timeout,
        )
    if json_out:
        as_json(run.model_dump(mode="json"))
        return
    console.print(f"applied [bold]{name}[/]: {_describe(run)}")


@app.command("define")
def define(
    ctx: typer.Context,
    name: str = NAME,
    sql: str = typer.Option(..., "--sql", help=SQL_HELP),
    into: str = typer.Option(..., "--into", help="The table to write (created if new)."),
    mode: str | None = typer.Option(None, "--mode", help="overwrite (default) or append."),
    description: str | None = typer.Option(None, "--description", help="What it makes."),
    project: str = PROJECT,
) -> None:
    """Define or change a transform without running it."""
    with state(ctx).client() as client:
        saved = client.transforms.define(
            project, name, sql=_read_sql(sql), into=into, mode=mode, description=description
        )
    console.print(
        f"defined [bold]{saved.name}[/] -> {saved.into_table} ({saved.mode}), "
        f"revision {saved.revision}"
    )


@app.command("list")
def list_transforms(
    ctx: typer.Context,
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = JSON,
) -> None:
    """List transforms with their output table, mode and revision."""
    shape = check_output(output, wide, json_out)
    with state(ctx).client() as client:
        items = client.transforms.list(project)
    rows = [(t.name, t.into_table, t.mode, t.revision, when(t.updated_at)) for t in items]
    columns = ["transform", "into", "mode", "revision", "updated"]
    records = [t.model_dump(mode="json") for t in items]
    listing(columns, rows, shape, required=2, records=records)


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = NAME,
    runs: int = typer.Option(10, "--runs", "-n", min=1, max=1000, help="Recent runs to show."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Show a transform's definition and its recent runs."""
    with state(ctx).client() as client:
        info = client.transforms.get(project, name)
        page = client.transforms.runs(project, name, limit=runs)
    if json_out:
        as_json(
            {
                **info.model_dump(mode="json"),
                "runs": [r.model_dump(mode="json") for r in page.items],
            }
        )
        return
    console.print(
        f"[bold]{info.name}[/] -> {info.into_table} ({info.mode}), revision {info.revision}"
    )
    if info.description:
        console.print(info.description)
    console.print(info.sql, markup=False, highlight=False)
    rows = [
        (when(r.created_at), r.revision, _inputs(r), f"{r.output_table}@{r.output_version}", r.rows)
        for r in page.items
    ]
    table(None, ["time", "revision", "inputs", "output", "rows"], rows)


@app.command("lineage")
def lineage(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="TABLE or TABLE@VERSION (the current version)."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Trace a table version back through the transforms that made it."""
    name, version = parse_table_version(target)
    with state(ctx).client() as client:
        found = client.transforms.lineage(project, name, version)
    if json_out:
        as_json(found.model_dump(mode="json"))
        return
    if not found.runs:
        console.print(f"{found.table}@{found.version} was not written by a transform")
        return
    console.print(f"[bold]{found.table}@{found.version}[/] comes from:")
    for run in found.runs:
        console.print(f"  {run.transform}: {_describe(run)}, {when(run.created_at)}")
    sources = ", ".join(str(s) for s in found.sources) or "none"
    console.print(f"sources (not written by a transform): {sources}")
    if found.truncated:
        console.print("(stopped early: more runs lie further back)", style="dim")


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: str = NAME,
    project: str = PROJECT,
    yes: bool = YES,
) -> None:
    """Delete a transform and its run history; the tables it wrote stay."""
    with deleting(
        ctx, yes, f"delete transform {name!r} of project {project!r}?", "transform", name
    ) as client:
        client.transforms.delete(project, name)
