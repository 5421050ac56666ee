"""``loopml experiments``: the named groups of a project's training runs."""

from __future__ import annotations

import typer

from loopml.cli._context import project_option, state
from loopml.cli._output import check_output, console, listing, output_option, when, wide_option

app = typer.Typer(help="List and create experiments (groups of runs).", no_args_is_help=True)

PROJECT = project_option("The project that owns the experiments.")


@app.command("list")
def list_experiments(
    ctx: typer.Context,
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List a project's experiments, by name."""
    shape = check_output(output, wide, json_out)
    with state(ctx).client() as client:
        items = list(client.experiments.iter(project=project))
    rows = [(e.name, when(e.updated_at), e.description, e.id) for e in items]
    records = [e.model_dump(mode="json") for e in items]
    listing(["name", "updated", "description", "id"], rows, shape, records=records)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The experiment's name."),
    description: str = typer.Option("", "--description", "-d", help="What it is for."),
    project: str = PROJECT,
) -> None:
    """Create an experiment to group runs under."""
    with state(ctx).client() as client:
        made = client.experiments.create(name, project=project, description=description)
    console.print(f"created experiment [bold]{made.name}[/] in {made.project}", highlight=False)
