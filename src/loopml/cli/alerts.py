"""``loopml alerts``: alert rules on deployments' window metrics."""

from __future__ import annotations

import typer

from loopml.cli._context import project_option, state
from loopml.cli._output import check_output, console, listing, output_option, when, wide_option
from loopml.core.alerts import METRICS

app = typer.Typer(help="Alert rules: list, create, delete, silence.", no_args_is_help=True)
PROJECT = project_option("The project that owns it.")
JSON = typer.Option(False, "--json", help="Print JSON instead of text (-o json).")
NAME = typer.Argument(..., help="The rule's name.")


@app.command("list")
def list_(
    ctx: typer.Context,
    deployment: str | None = typer.Option(None, "--deployment", "-d", help="Only this one's."),
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_: bool = JSON,
) -> None:
    """List alert rules and their states."""
    shape = check_output(output, wide, json_)
    with state(ctx).client() as client:
        rules = client.monitoring.alerts(deployment=deployment, project=project)
    rows = [
        (
            r.name,
            r.state,
            r.deployment,
            f"{r.metric} {r.comparator} {r.threshold:g} (clear {r.clear():g})",
            r.severity,
            "" if r.last_value is None else f"{r.last_value:.6g}",
            f"{r.for_s:g}s/{r.window}",
            when(r.silenced_until) if r.silenced_until else "",
        )
        for r in rules
    ]
    columns = [
        "name",
        "state",
        "deployment",
        "condition",
        "severity",
        "value",
        "for/window",
        "silenced until",
    ]
    records = [r.model_dump(mode="json") for r in rules]
    listing(columns, rows, shape, required=3, records=records)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = NAME,
    deployment: str = typer.Option(..., "--deployment", "-d", help="The deployment watched."),
    metric: str = typer.Option(..., "--metric", help="One of: " + ", ".join(sorted(METRICS))),
    comparator: str = typer.Option(">", "--comparator", help=">, >=, < or <="),
    threshold: float = typer.Option(..., "--threshold", help="The value that starts an alert."),
    clear: float | None = typer.Option(None, "--clear", help="The value that resolves it."),
    for_s: float = typer.Option(0.0, "--for", help="Seconds it must hold before firing."),
    window: str = typer.Option("1h", "--window", help="Window size (1h, 1d, ...)."),
    severity: str = typer.Option("warning", "--severity", help="info, warning or critical."),
    webhook: str | None = typer.Option(None, "--webhook", help="URL notified (Slack-compatible)."),
    project: str = PROJECT,
) -> None:
    """Add an alert rule."""
    with state(ctx).client() as client:
        rule = client.monitoring.create_alert(
            name,
            deployment=deployment,
            metric=metric,
            comparator=comparator,
            threshold=threshold,
            clear_threshold=clear,
            for_s=for_s,
            window=window,
            severity=severity,
            webhook=webhook,
            project=project,
        )
    console.print(
        f"alert rule [bold]{rule.name}[/] on {rule.deployment}: {rule.metric} {rule.comparator} "
        f"{rule.threshold:g} for {rule.for_s:g} s (clears past {rule.clear():g})",
        highlight=False,
    )


@app.command("delete")
def delete(ctx: typer.Context, name: str = NAME, project: str = PROJECT) -> None:
    """Remove an alert rule."""
    with state(ctx).client() as client:
        client.monitoring.delete_alert(name, project=project)
    console.print(f"alert rule {name} deleted", highlight=False)


@app.command("silence")
def silence(
    ctx: typer.Context,
    name: str = NAME,
    seconds: float = typer.Option(3600.0, "--for", help="Seconds of silence (0 resumes)."),
    project: str = PROJECT,
) -> None:
    """Stop a rule's notifications for a while (its state still moves)."""
    with state(ctx).client() as client:
        rule = client.monitoring.silence_alert(name, seconds, project=project)
    until = when(rule.silenced_until) if rule.silenced_until else "now (resumed)"
    console.print(f"alert rule {name} silenced until {until}", highlight=False)
