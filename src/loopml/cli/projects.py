"""``loopml projects``"""

from __future__ import annotations

import typer

from loopml.cli._context import state
from loopml.cli._delete import YES, deleting
from loopml.cli._output import check_output, console, listing, output_option, when, wide_option

app = typer.Typer(help="Create, list and delete projects.", no_args_is_help=True)


@app.command("list")
def list_projects(
    ctx: typer.Context,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List all projects."""
    shape = check_output("json" if json_out else output, wide)
    with state(ctx).client() as client:
        items = list(client.projects.iter())
    rows = [(p.name, when(p.created_at), p.description) for p in items]
    records = [p.model_dump(mode="json") for p in items]
    listing(["name", "created", "description"], rows, shape, records=records)


@app.command("create")
def create_project(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Lowercase letters, digits, '_' or '-'."),
    description: str = typer.Option("", "--description", "-d", help="What it is for."),
) -> None:
    """Create a project."""
    with state(ctx).client() as client:
        project = client.projects.create(name, description)
    console.print(f"created project [bold]{project.name}[/]")


@app.command("delete")
def delete_project(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The project to delete."),
    yes: bool = YES,
) -> None:
    """Delete a project and all its artifacts."""
    with deleting(
        ctx, yes, f"Delete project {name!r} and all its artifacts?", "project", name
    ) as client:
        client.projects.delete(name)
