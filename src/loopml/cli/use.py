"""``loopml use``: choose the current project, so commands need no ``-p``."""

from __future__ import annotations

import typer

from loopml.cli._context import current_project, project_file, state
from loopml.cli._output import console


def use(
    ctx: typer.Context,
    project: str | None = typer.Argument(
        None, help="The project to make current (it must exist). Omit to print the current one."
    ),
    clear: bool = typer.Option(False, "--clear", help="Forget the choice: back to default."),
) -> None:
    """Choose the project that commands use when given no -p (LOOPML_PROJECT wins over it)."""
    cli = state(ctx)
    path = project_file(cli.settings.home)
    if clear:
        path.unlink(missing_ok=True)
        console.print("current project: [bold]default[/] (choice cleared)")
        return
    if project is None:
        name, source = current_project()
        console.print(f"current project: [bold]{name}[/] (from {source})", highlight=False)
        return
    with cli.client() as client:
        client.projects.get(project)  # NotFoundError names it: nothing is written
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(project + "\n", encoding="utf-8")
    console.print(f"current project: [bold]{project}[/]", highlight=False)
    if cli.settings.project and cli.settings.project != project:
        console.print(
            f"note: LOOPML_PROJECT={cli.settings.project} is set and wins over this choice",
            highlight=False,
        )
