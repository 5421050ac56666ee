"""``loopml monitor DEPLOYMENT``: a terminal dashboard of a deployment's monitoring (usage,
latency, drift with the worst columns, live quality, replica resources, firing alerts);
``--watch`` redraws it."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from loopml.cli._context import project_option, state
from loopml.cli._output import as_json, console

WORST = 8


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _usage(window: dict[str, Any]) -> Table:
    used = window["summary"]["usage"]
    out = Table(title="usage", title_justify="left", header_style="bold")
    for column in (
        "requests",
        "errors",
        "error rate",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "batch",
    ):
        out.add_column(column)
    out.add_row(
        str(used["requests"]),
        str(used["errors"]),
        f"{used['error_rate']:.2%}",
        _number(used["requests_per_s"]),
        _number(used["latency_p50_ms"]),
        _number(used["latency_p95_ms"]),
        _number(used["latency_p99_ms"]),
        f"{used['batch_mean']:.1f} (max {used['batch_max']})",
    )
    return out


def _drift(window: dict[str, Any]) -> Table | str:
    drift = window["summary"].get("drift", {})
    if drift.get("status") != "ready":
        return f"drift: off ({drift.get('reason', 'no reference')})"
    title = (
        f"drift: {len(drift['drifted'])}/{drift['judged']} columns "
        f"({drift['share']:.0%}){' - INPUT DRIFTED' if drift['dataset_drift'] else ''}"
    )
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in (
        "column",
        "method",
        "score",
        "threshold",
        "drifted",
        "psi",
        "missing",
        "out of range / new",
    ):
        out.add_column(column)
    columns = list(drift["columns"])
    if drift.get("prediction"):
        columns.append(drift["prediction"])
    worst = sorted(columns, key=lambda c: (not c["drifted"], -c["psi"]))[:WORST]
    for c in worst:
        out.add_row(
            c["column"],
            c["method"],
            _number(c["score"]),
            _number(c["threshold"]),
            "yes" if c["drifted"] else "no",
            _number(c["psi"]),
            f"{c['missing_share']:.1%}",
            str(c["out_of_range"] or c["unseen"]),
        )
    return out


def _quality(window: dict[str, Any]) -> str:
    q = window["summary"]["quality"]
    estimated = _estimated(q.get("estimated"))
    if not q["labels"]:
        return "live quality: no labels yet (send them to /deployments/NAME/feedback)" + estimated
    names = ("accuracy", "f1", "roc_auc", "log_loss", "rmse", "mae", "r2")
    figures = ", ".join(f"{n} {_number(q[n])}" for n in names if q.get(n) is not None)
    return (
        f"live quality: {figures}; {q['labels']} labels, coverage {q['coverage']:.1%}, "
        f"mean delay {_number(q['delay_mean_s'])} s" + estimated
    )


def _estimated(e: dict[str, Any] | None) -> str:
    if not e:
        return ""
    shown = ("accuracy", "roc_auc", "mae", "rmse")
    figures = ", ".join(f"{n} {_number(e[n])}" for n in shown if e.get(n) is not None)
    return f"\nestimated quality (before labels, {e['method']}, {e['rows']} rows): {figures}"


def _resources(windows: list[dict[str, Any]]) -> Table | str:
    """The replicas of every model version in the newest window."""
    rows = [
        (f"{w['model']}/{w['version']}", replica)
        for w in windows
        for replica in w["summary"].get("resources", {}).get("replicas", [])
    ]
    if not rows:
        return "resources: no replica measured in this window"
    out = Table(title="resources", title_justify="left", header_style="bold")
    for column in (
        "model",
        "replica",
        "pid",
        "cpu % mean",
        "cpu % max",
        "rss MB",
        "conns",
        "restarts",
    ):
        out.add_column(column)
    for model, r in rows:
        out.add_row(
            model,
            r["replica"],
            str(r["pid"]),
            _number(r["cpu_mean"]),
            _number(r["cpu_max"]),
            f"{r['rss_mb_last']:.0f} (max {r['rss_mb_max']:.0f})",
            str(r["connections_max"]),
            str(r["restarts"]),
        )
    return out


def _failed(used: dict[str, Any]) -> str:
    """``2 failed (HTTP 405: 1, HTTP 503: 1)``: a window's failed requests by status."""
    by_status = used.get("errors_by_status") or {}
    statuses = ", ".join(f"HTTP {code}: {n}" for code, n in sorted(by_status.items()))
    return f"{used['errors']} failed" + (f" ({statuses})" if statuses else "")


def render(view: dict[str, Any]) -> Group:
    """The dashboard of one monitoring view."""
    parts: list[Any] = []
    head = f"[bold]{view['project']}/{view['deployment']}[/] - windows of {view['size']}"
    for key, ref in view["references"].items():
        status = ref["source"] if ref["status"] == "ready" else f"drift off: {ref['reason']}"
        head += f"\nreference {key}: {status}"
    parts.append(head)
    if not view["windows"]:
        parts.append("no window yet: nothing has been served (or the monitor has not run)")
    else:
        window = view["windows"][0]
        parts.append(
            f"newest window {window['start']} .. {window['end']} "
            f"({window['model']}/{window['version']}, {window['rows']} rows)"
        )
        parts += [_usage(window), _drift(window), _quality(window)]
        others = [w for w in view["windows"][1:] if w["start"] == window["start"]]
        parts.append(_resources([window, *others]))
        for other in others:
            used = other["summary"]["usage"]
            name = f"{other['model']}/{other['version']}" if other["model"] else "no replica"
            parts.append(
                f"also in this window: {name}: {used['requests']} requests, {_failed(used)}"
            )
    firing = view["firing"]
    parts.append(
        Panel(", ".join(firing), title="FIRING", style="red") if firing else "alerts: none firing"
    )
    return Group(*parts)


def monitor(
    ctx: typer.Context,
    deployment: str = typer.Argument(..., help="The deployment."),
    project: str = project_option("Its project."),
    window: str = typer.Option("1h", "--window", "-w", help="Window size (1h, 1d, ...)."),
    watch: bool = typer.Option(False, "--watch", help="Redraw every --interval seconds."),
    interval: float = typer.Option(5.0, "--interval", min=0.5, help="Seconds between redraws."),
    json_: bool = typer.Option(False, "--json", help="Print the view as JSON."),
) -> None:
    """Show a deployment's monitoring: usage, latency, drift, live quality, replica
    resources, alerts."""
    with state(ctx).client() as client:
        view = client.monitoring.view(deployment, window=window, project=project)
        if json_:
            as_json(view)
            return
        if not watch:
            console.print(render(view))
            return
        with Live(render(view), console=console, refresh_per_second=1) as live:
            while True:
                time.sleep(interval)
                live.update(
                    render(client.monitoring.view(deployment, window=window, project=project))
                )
