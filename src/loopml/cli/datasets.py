"""``loopml datasets``: immutable dataset snapshots, their profiles and train/eval splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from loopml.cli._context import project_option, state
from loopml.cli._delete import YES, deleting
from loopml.cli._output import (
    as_json,
    check_output,
    console,
    listing,
    output_option,
    table,
    when,
    wide_option,
)
from loopml.core.datasets import (
    ColumnProfile,
    DatasetDetail,
    DatasetRef,
    DatasetSplit,
    DatasetVersion,
    DatasetVersionResult,
    Part,
)
from loopml.core.errors import ValidationError

app = typer.Typer(
    help="Snapshot tables or SQL as immutable dataset versions; profile and split them.",
    no_args_is_help=True,
)

PROJECT = project_option("The project that owns the dataset.")
JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")
SEED = typer.Option(0, "--seed", min=0, help="Picks which rows go to eval (same seed, same split).")
STRATIFY = typer.Option(
    None, "--stratify", help="Keep each class of this column in the same share in both parts."
)


def _short(digest: str | None) -> str:
    return digest[:12] if digest else ""


def _split_line(split: DatasetSplit) -> str:
    spec = split.spec
    how = f"eval_fraction {spec.eval_fraction}, seed {spec.seed}"
    how += f", stratify {spec.stratify}" if spec.stratify else ""
    return (
        f"train {split.train_rows} rows ({_short(split.train_hash)}), "
        f"eval {split.eval_rows} rows ({_short(split.eval_hash)}); {how}"
    )


def _report(result: DatasetVersionResult, json_out: bool, what: str) -> None:
    if json_out:
        as_json({"created": result.created, **_version_json(result)})
        return
    if result.created:
        console.print(
            f"{what} [bold]{result.ref}[/]: {result.row_count} rows, hash "
            f"{_short(result.content_hash)}"
        )
    else:
        console.print(
            f"unchanged: [bold]{result.ref}[/] already holds this "
            f"({result.row_count} rows, hash {_short(result.content_hash)}); nothing new was made"
        )
    sources = ", ".join(f"{s.table}@{s.version}" for s in result.sources) or "none"
    console.print(f"sources: {sources}")
    if result.split is not None:
        console.print(f"split: {_split_line(result.split)}")


def _version_json(version: DatasetVersion) -> dict[str, Any]:
    data = version.model_dump(mode="json")
    data.pop("created", None)
    return data


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The dataset (created with its first version)."),
    source: str = typer.Option(
        ..., "--from", help="A table (churn), a table version (churn@3) or one SELECT."
    ),
    description: str = typer.Option("", "--description", help="The dataset's description."),
    split: float | None = typer.Option(
        None, "--split", help="Freeze a train/eval split: the eval fraction, such as 0.2."
    ),
    stratify: str | None = STRATIFY,
    seed: int | None = typer.Option(None, "--seed", min=0, help="The split's seed (default 0)."),
    timeout_s: float | None = typer.Option(None, "--timeout", help="Query time limit, seconds."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Snapshot a table or a query as the dataset's next version (hashed and profiled)."""
    spec: dict[str, Any] | None = None
    if split is None and (stratify is not None or seed is not None):
        raise ValidationError("--stratify and --seed need --split FRACTION (such as 0.2)")
    if split is not None:
        spec = {"eval_fraction": split, "seed": seed or 0, "stratify": stratify}
    with state(ctx).client() as client:
        result = client.datasets.create(
            project, name, source, description=description, split=spec, timeout_s=timeout_s
        )
    _report(result, json_out, "created")


@app.command("list")
def list_datasets(
    ctx: typer.Context,
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = JSON,
) -> None:
    """List datasets with their latest version."""
    shape = check_output(output, wide, json_out)
    with state(ctx).client() as client:
        items = list(client.datasets.iter(project))
    rows = [
        (
            d.name,
            d.latest_version,
            d.latest.row_count if d.latest else "",
            _short(d.latest.content_hash) if d.latest else "",
            _short(d.latest.eval_hash) if d.latest else "",
            when(d.updated_at),
        )
        for d in items
    ]
    columns = ["dataset", "version", "rows", "hash", "eval hash", "updated"]
    records = [d.model_dump(mode="json") for d in items]
    listing(columns, rows, shape, required=2, records=records)


@app.command("show")
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME (its versions) or NAME@VERSION (one version)."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Show a dataset's versions, or one version's sources, hashes, split and profile."""
    parsed = DatasetRef.parse(ref)
    with state(ctx).client() as client:
        if "@" in ref:
            _show_version(client.datasets.version(project, parsed.name, parsed.version), json_out)
        else:
            _show_dataset(client.datasets.get(project, parsed.name), json_out)


def _show_dataset(detail: DatasetDetail, json_out: bool) -> None:
    if json_out:
        as_json(detail.model_dump(mode="json"))
        return
    console.print(f"[bold]{detail.name}[/]  {detail.latest_version} version(s)")
    if detail.description:
        console.print(detail.description, markup=False)
    rows = [
        (
            v.version,
            v.row_count,
            _short(v.content_hash),
            _short(v.eval_hash),
            ", ".join(f"{s.table}@{s.version}" for s in v.sources),
            when(v.created_at),
        )
        for v in detail.versions
    ]
    table(None, ["version", "rows", "hash", "eval hash", "sources", "created"], rows)


def _show_version(version: DatasetVersion, json_out: bool) -> None:
    if json_out:
        as_json(version.model_dump(mode="json"))
        return
    console.print(
        f"[bold]{version.ref}[/]  {version.row_count} rows, {len(version.columns)} columns, "
        f"made {when(version.created_at)} by {version.actor}"
    )
    console.print(f"hash: {version.content_hash}")
    console.print(f"from: {version.source}", markup=False)
    sources = ", ".join(f"{s.table}@{s.version}" for s in version.sources) or "none"
    console.print(f"sources: {sources}")
    if version.split is not None:
        console.print(f"split: {_split_line(version.split)}")
        console.print(f"eval hash: {version.split.eval_hash}")
    header = ["column", "type", "nulls", "min", "max", "mean", "std", "distinct", "top"]
    table(None, header, [_profile_row(c) for c in version.profile.columns])


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _profile_row(column: ColumnProfile) -> list[str]:
    top = ", ".join(f"{t.value} ({t.count})" for t in (column.top or [])[:3])
    cells = [
        column.name,
        column.type,
        f"{column.null_share:.1%}",
        _number(column.min),
        _number(column.max),
        _number(column.mean),
        _number(column.std),
        _number(column.distinct),
        top,
    ]
    # Names, types (timestamp[us]) and values are data, never Rich markup.
    return [escape(cell) for cell in cells]


@app.command("split")
def split(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME@VERSION (NAME alone: the latest version)."),
    eval_fraction: float = typer.Option(
        0.2, "--eval-fraction", "--eval", "--split", help="The share of rows that goes to eval."
    ),
    seed: int = SEED,
    stratify: str | None = STRATIFY,
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Freeze a train/eval split onto a version; a version's split never changes."""
    parsed = DatasetRef.parse(ref)
    with state(ctx).client() as client:
        result = client.datasets.split(
            project,
            parsed.name,
            parsed.version,
            eval_fraction=eval_fraction,
            seed=seed,
            stratify=stratify,
        )
    _report(result, json_out, "split")


@app.command("download")
def download(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME@VERSION (NAME alone: the latest version)."),
    output: Path = typer.Option(..., "--output", "-o", help="The Parquet file to write."),
    part: str = typer.Option("all", "--part", help="all, train or eval."),
    project: str = PROJECT,
) -> None:
    """Download a version's rows (or a split part) as a Parquet file, verified by the server."""
    parsed = DatasetRef.parse(ref)
    if part not in ("all", "train", "eval"):
        raise ValidationError(f"invalid --part {part[:20]!r}: expected all, train or eval")
    chosen: Part = "train" if part == "train" else "eval" if part == "eval" else "all"
    with state(ctx).client() as client:
        path = client.datasets.download(
            project, parsed.name, output, version=parsed.version, part=chosen
        )
    console.print(f"saved {ref} ({part}) to {path}", markup=False)


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The dataset."),
    project: str = PROJECT,
    yes: bool = YES,
) -> None:
    """Delete a dataset, all its versions and their files."""
    question = f"delete dataset {name!r} of project {project!r} and all its versions?"
    with deleting(ctx, yes, question, "dataset", name) as client:
        client.datasets.delete(project, name)
