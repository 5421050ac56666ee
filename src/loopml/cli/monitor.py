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
from loopml.cli._endpoints import feedback_path
from loopml.cli._output import as_json, console
from loopml.core.drift import LEGEND, drifts_when, figure

WORST = 8


def _figure(value: float | None) -> str:
    """A drift figure (score, p-value, PSI), written as the portal writes it."""
    return "-" if value is None else figure(value)


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


def _drift(window: dict[str, Any], name: str, show_all: bool) -> list[Any]:
    drift = window["summary"].get("drift", {})
    if drift.get("status") != "ready":
        return [f"drift: off ({drift.get('reason', 'no reference')})"]
    columns = list(drift["columns"])
    if drift.get("prediction"):
        columns.append(drift["prediction"])
    worst = sorted(columns, key=lambda c: (not c["drifted"], -c["psi"]))
    shown = worst if show_all else worst[:WORST]
    parts: list[Any] = [_drift_table(drift, shown), LEGEND]
    if drift.get("looks"):  # windows stored before looks have none
        parts.append(
            f"judged at {drift['judged_rows']:,} rows, look {drift['looks']} (again once "
            "the rows grow 10 %)"
        )
    if drift.get("sequential"):  # windows stored before the sequential test have none
        parts.append(_sequential_line(drift["sequential"]))
    hidden = len(worst) - len(shown)
    if hidden:
        parts.append(
            f"{len(shown)} of {len(worst)} columns shown, the worst first; {hidden} hidden "
            f"(all of them: loopml monitor {name} --all, or -o json)"
        )
    return parts


def _sequential_line(found: dict[str, Any]) -> str:
    """The sequential test's statistic nearest its threshold (docs/monitoring.md)."""
    which = f"{found['column']} {found['score']} {found['direction']}"
    limit, rows = f"{found['threshold']:.1f}", f"{found['rows']:,} rows"
    if found["alarm"]:
        return f"sequential: {which} DRIFTED, CUSUM {found['cusum']:.1f} >= {limit} at {rows}"
    return f"sequential: nearest {which}, CUSUM {found['cusum']:.1f} of {limit} at {rows}"


def _drift_title(drift: dict[str, Any]) -> str:
    title = (
        f"drift: {len(drift['drifted'])}/{drift['judged']} columns "
        f"({drift['share']:.0%}){' - INPUT DRIFTED' if drift['dataset_drift'] else ''}"
    )
    alpha = next((c["alpha"] for c in drift["columns"] if c.get("alpha")), None)
    if alpha:  # windows stored before the p-value decided have none
        title += f"; drifted: score past threshold and p < {alpha:.2g}"
    return title


def _rule(method: str, threshold: float) -> str:
    """The "drifts when" cell: the test and its rule, the test named once
    (``ks p < 0.05``, ``wasserstein >= 0.1``, ``ks -``)."""
    rule = drifts_when(method, threshold)
    return rule if rule.startswith(f"{method} ") else f"{method} {rule}"


def _drift_table(drift: dict[str, Any], shown: list[dict[str, Any]]) -> Table:
    # "missing" only where a value is missing: eight columns do not fit in 80 with it
    missing = any(c["missing_share"] for c in shown)
    out = Table(title=_drift_title(drift), title_justify="left", header_style="bold")
    out.add_column("column", overflow="fold", min_width=12)
    headers = ("score", "drifts when", "p", "drift", "psi", "missing", "outside")
    for column in headers if missing else tuple(h for h in headers if h != "missing"):
        # Seven columns fit in 80 with the rule and the figures whole (a p-value to three
        # figures is 8 wide) and names folded; with "missing" the cells wrap.
        out.add_column(column, no_wrap=not missing and column != "outside")
    for c in shown:
        cells = [
            c["column"],
            _figure(c["score"]),
            _rule(c["method"], c["threshold"]),
            _figure(c.get("p_value")),
            "yes" if c["drifted"] else "no",
            _figure(c["psi"]),
            f"{c['missing_share']:.1%}",
            str(c["out_of_range"] or c["unseen"]),
        ]
        out.add_row(*(cells if missing else cells[:6] + cells[7:]))
    return out


def _quality(window: dict[str, Any], feedback: str) -> str:
    q = window["summary"]["quality"]
    estimated = _estimated(q.get("estimated"))
    if not q["labels"]:
        return f"live quality: no labels yet (POST them to {feedback})" + estimated
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


def _resources(window: dict[str, Any], others: list[dict[str, Any]]) -> Table | str:
    """The replicas of every model version in the window's time."""
    rows = [
        (f"{window['model']}/{window['version']}", replica)
        for replica in window["summary"].get("resources", {}).get("replicas", [])
    ] + [(f"{o['model']}/{o['version']}", replica) for o in others for replica in o["replicas"]]
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
            r["replica"] + (" (retired)" if r.get("retired") else ""),
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


def render(view: dict[str, Any], show_all: bool = False) -> Group:
    """The dashboard of one monitoring view: the figures of ``view["now"]`` (the serving
    version's newest window, as the portal and the API show them)."""
    parts: list[Any] = []
    now = view["now"]
    head = f"[bold]{view['project']}/{view['deployment']}[/] - windows of {view['size']}"
    if now["model"]:
        head += f"\nserving {now['model']}/{now['version']} ({now['traffic_percent']} % of traffic)"
        ref = now["reference"]
        status = ref["source"] if ref["status"] == "ready" else f"drift off: {ref['reason']}"
        head += f"\nreference {now['model']}/{now['version']}: {status}"
    parts.append(head)
    window = now["window"]
    if window is None:
        parts.append(now["reason"] or "no window yet")
    else:
        parts.append(
            f"newest window {window['start']} .. {window['end']} "
            f"({window['model']}/{window['version']}, {window['rows']} rows)"
        )
        feedback = feedback_path(view["project"], view["deployment"])
        parts += [
            _usage(window),
            *_drift(window, view["deployment"], show_all),
            _quality(window, feedback),
        ]
        parts.append(_resources(window, now["others"]))
        for other in now["others"]:
            name = f"{other['model']}/{other['version']}" if other["model"] else "no replica"
            parts.append(
                f"also in this window: {name}: {other['requests']} requests, {_failed(other)}"
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
    output: str = typer.Option("table", "--output", "-o", help="table, or json for scripts."),
    json_: bool = typer.Option(False, "--json", help="Print the view as JSON (-o json)."),
    show_all: bool = typer.Option(False, "--all", help="Every drift column, not the worst 8."),
) -> None:
    """Show a deployment's monitoring: the serving version's usage, latency, drift, live
    quality, replica resources, alerts (the figures the portal's page shows)."""
    if output not in ("table", "json"):
        raise typer.BadParameter(f"--output {output!r}: expected table or json")
    with state(ctx).client() as client:
        view = client.monitoring.view(deployment, window=window, project=project)
        if json_ or output == "json":
            as_json(view)
            return
        if not watch:
            console.print(render(view, show_all))
            return
        with Live(render(view, show_all), console=console, refresh_per_second=1) as live:
            while True:
                time.sleep(interval)
                fresh = client.monitoring.view(deployment, window=window, project=project)
                live.update(render(fresh, show_all))
