"""``loopml status``: the server, the current project's deployments and latest runs."""

from __future__ import annotations

import typer

from loopml.cli._context import current_project, project_option, state
from loopml.cli._output import console, listing, when

PROJECT = project_option("The project to show (default: the current one).")


def status(
    ctx: typer.Context,
    project: str = PROJECT,
    runs: int = typer.Option(5, "--runs", "-n", min=0, max=100, help="Latest runs shown."),
) -> None:
    """Where things stand: server, deployments and their state, latest pipeline runs."""
    from loopml.core.errors import ServiceUnavailableError

    cli = state(ctx)
    with cli.client() as client:
        try:
            health = client.health()
        except ServiceUnavailableError as exc:
            console.print(f"server    {client.url}: [red]down[/] ({exc.message})", highlight=False)
            raise typer.Exit(1) from None
        name, source = current_project()
        chosen = "" if project != name else f" (current, from {source})"
        console.print(
            f"server    {client.url}: [green]{health.get('status', 'ok')}[/], "
            f"loopml {health.get('version', '?')}\n"
            f"project   {project}{chosen}",
            highlight=False,
            soft_wrap=True,
        )
        deployments = list(client.deployments.iter(project=project))
        pipeline_runs = client.pipelines.runs(project=project, limit=runs).items if runs else []
    console.print(f"\n[bold]deployments[/] ({len(deployments)})", highlight=False)
    if deployments:
        rows = [
            (
                d.name,
                d.status.value,
                d.spec.model,
                f"{d.replicas_ready}/{d.spec.min_replicas}-{d.spec.max_replicas}",
                ", ".join(f"r{r} {p}%" for r, p in sorted(d.traffic.items())),
                d.status_message,
            )
            for d in deployments
        ]
        columns = ["name", "status", "model", "replicas", "traffic", "message"]
        listing(columns, rows, "table", required=3)
    if runs:
        console.print(f"\n[bold]latest pipeline runs[/] ({len(pipeline_runs)})", highlight=False)
        if pipeline_runs:
            rows2 = [
                (r.pipeline, r.status.value, when(r.created_at), r.actor, r.id, r.error or "")
                for r in pipeline_runs
            ]
            columns2 = ["pipeline", "status", "created", "by", "id", "error"]
            listing(columns2, rows2, "table", required=3)
    console.print("\nalerts    monitoring is not built yet: no alerts to show", highlight=False)
