"""``loopml features``: feature views, point-in-time training sets, the online store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from loopml.cli._context import project_option, state
from loopml.cli._list_command import add_list_command
from loopml.cli._output import (
    as_json,
    console,
    when,
)

if TYPE_CHECKING:
    from loopml.core.features import FeatureView

app = typer.Typer(
    help="Feature views, point-in-time training sets and online feature values.",
    no_args_is_help=True,
)

PROJECT = project_option("The project that owns the views.")
JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
VIEW = typer.Argument(..., help="The feature view's name.")


def _ttl(seconds: int) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _online(view: FeatureView) -> str:
    state_ = view.materialized
    if state_ is None:
        return "not materialized"
    until = when(state_.watermark) if state_.watermark else "-"
    return f"v{state_.version} up to {until}, {state_.rows} entities"


def _show(view: FeatureView) -> None:
    spec = view.spec
    console.print(
        f"feature view [bold]{view.name}[/] v{view.version} (newest v{view.latest_version}) "
        f"keyed by {', '.join(spec.entities)}, time {spec.event_time}, ttl {_ttl(spec.ttl_s)}",
        highlight=False,
    )
    console.print(f"source: {spec.source}", highlight=False, markup=False)
    console.print(f"features: {', '.join(spec.features)}", highlight=False, markup=False)
    console.print(f"online: {_online(view)}", highlight=False)


@app.command("apply")
def apply(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The YAML spec."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Apply a view's spec: a new version when it changed, nothing when it did not."""
    with state(ctx).client() as client:
        applied = client.features.apply(file.read_text(encoding="utf-8"), project=project)
    if json_out:
        as_json(applied.model_dump(mode="json"))
        return
    view = applied.view
    verb = "applied as" if applied.created else "unchanged at"
    console.print(f"feature view {view.name} {verb} version {view.version}", highlight=False)


def _view_row(v: FeatureView) -> list[Any]:
    spec = v.spec
    return [
        v.name,
        v.version,
        ",".join(spec.entities),
        len(spec.features),
        _ttl(spec.ttl_s),
        _online(v),
    ]


add_list_command(
    app,
    help="The project's feature views at their newest versions.",
    project_option=PROJECT,
    json_option=JSON,
    fetch=lambda client, project: client.features.list(project),
    columns=["name", "version", "entities", "features", "ttl", "online"],
    row=_view_row,
)


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = VIEW,
    version: int | None = typer.Option(None, "--version", min=1, help="Default: newest."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """One version of a view in full."""
    with state(ctx).client() as client:
        found = client.features.show(name, version=version, project=project)
    if json_out:
        as_json(found.model_dump(mode="json"))
    else:
        _show(found)


@app.command("training-set")
def training_set(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="The dataset the result becomes a version of."),
    entities: str | None = typer.Option(
        None, "--entities", help="The entity table: a lake table or one SELECT."
    ),
    entities_dataset: str | None = typer.Option(
        None, "--entities-dataset", help="Or a dataset version: NAME or NAME@VERSION."
    ),
    entities_part: str = typer.Option(
        "all", "--entities-part", help="With --entities-dataset: all, train or eval."
    ),
    views: str = typer.Option(..., "--views", help="Feature views, comma-separated."),
    event_time: str = typer.Option(
        "event_time", "--event-time", help="The entity table's time column."
    ),
    eval_fraction: float | None = typer.Option(
        None, "--eval-fraction", help="Freeze a train/eval split with this share held out."
    ),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Join views onto an entity table as of each row's time: a dataset version."""
    from loopml.core.datasets import SplitSpec

    split = None if eval_fraction is None else SplitSpec(eval_fraction=eval_fraction)
    with state(ctx).client() as client:
        made = client.features.training_set(
            dataset,
            entities=entities,
            entities_dataset=entities_dataset,
            entities_part=entities_part,
            views=[v.strip() for v in views.split(",") if v.strip()],
            event_time=event_time,
            split=split,
            project=project,
        )
    if json_out:
        as_json(made.model_dump(mode="json"))
        return
    verb = "created" if made.created else "unchanged at"
    console.print(
        f"dataset {made.dataset} {verb} version {made.version}: {made.row_count} rows",
        highlight=False,
    )


@app.command("materialize")
def materialize(
    ctx: typer.Context,
    name: str = VIEW,
    full: bool = typer.Option(False, "--full", help="Read the whole source again."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Write the view's newest values per entity to the online store."""
    with state(ctx).client() as client:
        done = client.features.materialize(name, full=full, project=project)
    if json_out:
        as_json(done.model_dump(mode="json"))
        return
    kind = "full" if done.full else "incremental"
    until = when(done.watermark) if done.watermark else "-"
    console.print(
        f"{name} v{done.version}: {kind}, {done.rows_read} rows read, "
        f"{done.entities_written} entities written, up to {until}",
        highlight=False,
    )


@app.command("get")
def get(
    ctx: typer.Context,
    name: str = VIEW,
    entity: str = typer.Argument(..., help="The entity's key."),
    project: str = PROJECT,
) -> None:
    """The online values of one entity, as JSON."""
    with state(ctx).client() as client:
        found = client.features.get(name, entity, project=project)
    as_json(found.model_dump(mode="json"))


@app.command("skew")
def skew(
    ctx: typer.Context,
    name: str = VIEW,
    deployment: str = typer.Option(..., "--deployment", "-d", help="The serving deployment."),
    sample: int = typer.Option(1000, "--sample", help="Newest logged rows to check."),
    tolerance: float = typer.Option(1e-9, "--tolerance", help="Relative, for numbers."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Training/serving skew: the feature values DEPLOYMENT served against the lake's as of
    the same times; the share that differ, per feature."""
    with state(ctx).client() as client:
        report = client.features.skew(
            name, deployment=deployment, sample=sample, tolerance=tolerance, project=project
        )
    if json_out:
        as_json(report.model_dump(mode="json"))
        return
    console.print(
        f"{name} v{report.version} against {deployment}: {report.rows_compared} of "
        f"{report.rows_logged} logged rows compared",
        highlight=False,
    )
    for item in report.features:
        line = f"  {item.feature}: {item.differ} of {item.compared} differ ({item.share:.1%})"
        console.print(line, highlight=False, markup=False)
        for example in item.examples[:2]:
            console.print(
                f"    {example.entity} at {when(example.served_at)}: served "
                f"{example.served!r}, lake {example.offline!r}",
                highlight=False,
                markup=False,
            )
