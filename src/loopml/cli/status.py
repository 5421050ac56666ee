"""``loopml status``: the server, the current project's deployments, latest pipeline runs and
open alerts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from loopml.cli._context import current_project, project_option, state
from loopml.cli._output import as_json, console, listing, shown_as_json, when

if TYPE_CHECKING:
    from loopml.core.alerts import AlertRule
    from loopml.core.deployments import Deployment
    from loopml.core.pipelines import PipelineRun

PROJECT = project_option("The project to show (default: the current one).")
_OPEN = ("firing", "pending")


def status(
    ctx: typer.Context,
    project: str = PROJECT,
    runs: int = typer.Option(5, "--runs", "-n", min=0, max=100, help="Latest runs shown."),
    alerts: int = typer.Option(5, "--alerts", min=0, max=100, help="Newest open alerts shown."),
    output: str = typer.Option("table", "--output", "-o", help="table or json."),
) -> None:
    """Where things stand: server, deployments and their state, latest pipeline runs, and the
    alert rules that are firing or about to."""
    from loopml.core.errors import ServiceUnavailableError

    json_out = shown_as_json(output)
    cli = state(ctx)
    with cli.client() as client:
        try:
            health = client.health()
        except ServiceUnavailableError as exc:
            # A 503 from the health route carries its report: the server answers, but its
            # database does not (or its schema is behind); anything else is no answer at all.
            verdict = "not ready" if "checks" in exc.details else "down"
            if json_out:
                as_json({"server": {"url": client.url, "status": verdict, "message": exc.message}})
                raise typer.Exit(1) from None
            console.print(
                f"server    {client.url}: [red]{verdict}[/] ({exc.message})",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None
        name, source = current_project()
        deployments = list(client.deployments.iter(project=project))
        pipeline_runs = client.pipelines.runs(project=project, limit=runs).items if runs else []
        rules = client.monitoring.alerts(project=project)
    if json_out:
        server = {"url": client.url, **health}
        as_json(
            _status_json(
                server, project, project == name, deployments, pipeline_runs, rules, alerts
            )
        )
        return
    chosen = "" if project != name else f" (current, from {source})"
    console.print(
        f"server    {client.url}: [green]{health.get('status', 'ok')}[/], "
        f"loopml {health.get('version', '?')}\n"
        f"project   {project}{chosen}",
        highlight=False,
        soft_wrap=True,
    )
    _deployments(deployments)
    if runs:
        _runs(pipeline_runs)
    _alerts(rules, alerts)


def _status_json(
    server: dict[str, Any],
    project: str,
    current: bool,
    deployments: list[Deployment],
    pipeline_runs: list[PipelineRun],
    rules: list[AlertRule],
    shown: int,
) -> dict[str, Any]:
    """What the tables show, as ``-o json`` prints it: the same deployments, runs and open
    alerts (at most ``shown``, firing first), and how many rules the project has."""
    return {
        "server": server,
        "project": project,
        "current": current,
        "deployments": [d.model_dump(mode="json") for d in deployments],
        "pipeline_runs": [r.model_dump(mode="json") for r in pipeline_runs],
        "open_alerts": [r.model_dump(mode="json") for r in open_alerts(rules)[:shown]],
        "alert_rules": len(rules),
    }


def _deployments(deployments: list[Deployment]) -> None:
    console.print(f"\n[bold]deployments[/] ({len(deployments)})", highlight=False)
    if not deployments:
        return
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
    columns = ["name", "status", "model", "ready/min-max", "traffic", "message"]
    listing(columns, rows, "table", required=3)


def _runs(pipeline_runs: list[PipelineRun]) -> None:
    console.print(f"\n[bold]latest pipeline runs[/] ({len(pipeline_runs)})", highlight=False)
    if not pipeline_runs:
        return
    rows = [
        (r.pipeline, r.status.value, when(r.created_at), r.actor, r.id, r.error or "")
        for r in pipeline_runs
    ]
    listing(["pipeline", "status", "created", "by", "id", "error"], rows, "table", required=3)


def open_alerts(rules: list[AlertRule]) -> list[AlertRule]:
    """The rules firing or pending, firing first, then the newest state first."""
    found = [r for r in rules if r.enabled and r.state in _OPEN]
    found.sort(key=lambda r: r.state_since.timestamp() if r.state_since else 0.0, reverse=True)
    return sorted(found, key=lambda r: _OPEN.index(r.state))


def _age(since: datetime | None, now: datetime) -> str:
    """How long ago ``since`` was, in its largest unit: ``45s``, ``12m``, ``3h``, ``2d``."""
    if since is None:
        return ""
    seconds = max(0, int((now - _aware(since)).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _silenced(rule: AlertRule, now: datetime) -> bool:
    return rule.silenced_until is not None and _aware(rule.silenced_until) > now


def _alerts(rules: list[AlertRule], shown: int) -> None:
    found = open_alerts(rules)
    if not rules:
        console.print(
            "\nalerts    no alert rules in this project (add one: loopml alerts create)",
            highlight=False,
        )
        return
    now = datetime.now(UTC)
    firing = sum(1 for r in found if r.state == "firing")
    counts = f"{firing} firing, {len(found) - firing} pending, of {len(rules)} rule(s)"
    console.print(f"\n[bold]alerts[/] ({counts})", highlight=False)
    rows = [
        (
            r.name,
            r.state + (" (silenced)" if _silenced(r, now) else ""),
            r.deployment,
            f"{r.metric} {'-' if r.last_value is None else f'{r.last_value:.4g}'} "
            f"{r.comparator} {r.threshold:g}",
            _age(r.state_since, now),
            r.severity,
        )
        for r in found[:shown]
    ]
    if rows:
        columns = ["rule", "state", "deployment", "value", "for", "severity"]
        listing(columns, rows, "table", required=3)
    if len(found) > shown:
        console.print(f"({len(found) - shown} more: loopml alerts list)", highlight=False)
