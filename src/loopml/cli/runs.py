"""``loopml runs``: list, show and compare runs."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import typer

from loopml.cli._context import project_option, state
from loopml.cli._delete import YES, deleting
from loopml.cli._output import (
    as_json,
    check_output,
    console,
    err_console,
    listing,
    output_option,
    table,
    when,
    wide_option,
)

if TYPE_CHECKING:
    from loopml.core.run_search import RunSearch
    from loopml.core.runs import Run

app = typer.Typer(help="List, show and compare training runs.", no_args_is_help=True)

PROJECT = project_option("The project that owns the runs.")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return "NaN" if math.isnan(value) else f"{value:.6g}"


def _spec(
    experiment: str | None,
    status: list[str],
    filters: list[str],
    order_by: list[str],
    limit: int,
    children: dict[str, str | None] | None = None,
) -> RunSearch:
    import pydantic

    from loopml.core.errors import ValidationError
    from loopml.core.run_search import RunFilter, RunOrder, RunSearch

    parsed = {
        "experiment": experiment,
        "status": [s.upper() for s in status],
        "filters": [RunFilter.parse(text) for text in filters],
        "order_by": [RunOrder.parse(text) for text in order_by],
        "limit": limit,
        **(children or {}),
    }
    try:
        return RunSearch.model_validate(parsed, strict=False)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValidationError(f"invalid {where}: {first['msg']}") from exc


@app.command("list")
def list_runs(
    ctx: typer.Context,
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="Only this one."),
    status: list[str] = typer.Option([], "--status", "-s", help="RUNNING, FINISHED, ..."),
    filters: list[str] = typer.Option(
        [], "--filter", "-f", help="Such as 'metrics.acc >= 0.9', 'params.model = lgbm'."
    ),
    order_by: list[str] = typer.Option(
        [], "--order-by", help="Such as 'metrics.acc desc' (default: newest first)."
    ),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=1000, help="How many runs."),
    all_runs: bool = typer.Option(
        False, "--all", help="Every run, child runs (AutoML trials) too, flat."
    ),
    parent: str | None = typer.Option(None, "--parent", help="Only this run's child runs."),
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = JSON,
) -> None:
    """List runs, filtered and sorted by metrics, params, tags and attributes.

    Child runs (an AutoML search's trials) are folded under their parent run, which shows
    how many it has: --parent RUN_ID lists them, --all lists every run flat.
    """
    shape = check_output("json" if json_out else output, wide)
    children = {"children": "flat" if all_runs else "folded", "parent_run_id": parent}
    spec = _spec(experiment, status, filters, order_by, limit, children)
    with state(ctx).client() as client:
        runs = client.runs.search(spec, project=project).items
    folded = not all_runs and parent is None
    columns, rows = _table(runs, folded)
    records = [r.model_dump(mode="json") for r in runs]
    listing(columns, rows, shape, required=4, records=records)
    hidden = sum(r.children or 0 for r in runs)
    if folded and hidden and shape not in ("json", "csv"):
        err_console.print(
            f"({hidden} child run(s) folded under their parents; list them with "
            "--parent RUN_ID, or every run with --all)",
            highlight=False,
            soft_wrap=True,
        )


def _table(runs: list[Run], folded: bool) -> tuple[list[str], list[list[str]]]:
    """The columns and rows of ``runs list``: a count of child runs when they are folded,
    else each run's parent."""
    keys = sorted({k for r in runs for k in (r.metrics or {})})
    rows = [
        [r.id, r.name, r.status, _children(r) if folded else (r.parent_run_id or "-")]
        + [r.experiment, when(r.start_time)]
        + [_number((r.metrics or {}).get(k)) for k in keys]
        for r in runs
    ]
    columns = ["id", "name", "status", "children" if folded else "parent", "experiment"]
    return [*columns, "started", *keys], rows


def _children(run: Run) -> str:
    return str(run.children) if run.children else "-"


@app.command("show")
def show_run(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The run's id."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Show one run: its status, code version, params, latest metrics, tags and inputs."""
    with state(ctx).client() as client:
        run = client.runs.get(run_id, project=project)
    if json_out:
        as_json(run.model_dump(mode="json"))
        return
    ended = when(run.end_time) if run.end_time else "-"
    console.print(f"[bold]{run.name}[/] ({run.id}) in {run.project}/{run.experiment}")
    console.print(f"status {run.status}, started {when(run.start_time)}, ended {ended}")
    if run.code_version:
        console.print("code " + ", ".join(f"{k}={v}" for k, v in run.code_version.items()))
    table("params", ["key", "value"], sorted((run.params or {}).items()))
    metrics = sorted((k, _number(v)) for k, v in (run.metrics or {}).items())
    table("latest metrics", ["key", "value"], metrics)
    table("tags", ["key", "value"], sorted((run.tags or {}).items()))
    if run.inputs:
        table("inputs", ["kind", "ref"], [(i.kind, i.ref) for i in run.inputs])


def _compare_rows(runs: list[Run]) -> list[list[str]]:
    rows: list[list[str]] = [["status", *(r.status for r in runs)]]
    for key in sorted({k for r in runs for k in (r.params or {})}):
        rows.append([f"params.{key}", *((r.params or {}).get(key, "-") for r in runs)])
    for key in sorted({k for r in runs for k in (r.metrics or {})}):
        rows.append([f"metrics.{key}", *(_number((r.metrics or {}).get(key)) for r in runs)])
    return rows


@app.command("compare")
def compare_runs(
    ctx: typer.Context,
    run_ids: list[str] = typer.Argument(..., help="Two or more run ids."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Compare runs: params and latest metrics side by side."""
    with state(ctx).client() as client:
        runs = [client.runs.get(run_id, project=project) for run_id in run_ids]
    if json_out:
        as_json([r.model_dump(mode="json") for r in runs])
        return
    table(None, ["", *(f"{r.name} ({r.id[:8]})" for r in runs)], _compare_rows(runs))


@app.command("delete")
def delete_run(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The run to delete."),
    project: str = PROJECT,
    yes: bool = YES,
) -> None:
    """Delete a run, its child runs and all their files."""
    with deleting(ctx, yes, f"Delete run {run_id} and all its files?", "run", run_id) as client:
        client.runs.delete(run_id, project=project)


from loopml.cli import mlflow as _mlflow  # noqa: E402

app.command("package-mlflow")(_mlflow.package)
