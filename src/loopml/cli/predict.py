"""``loopml predict``: batch scoring of a table or a local file into a table."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import typer

from loopml.cli._context import project_option, state
from loopml.cli._output import as_json, console, err_console
from loopml.cli.artifacts import _bar
from loopml.core.errors import ValidationError
from loopml.core.executors import check_place


@contextlib.contextmanager
def _spinner(text: str) -> Iterator[None]:
    if not err_console.is_terminal:  # no animation in logs and pipes
        yield
        return
    with err_console.status(text):
        yield


def predict(
    ctx: typer.Context,
    input: str = typer.Option(
        ...,
        "--input",
        "-i",
        help="A table (customers, customers@3), or a CSV, Parquet or JSON Lines file: a path "
        "that exists is a file.",
    ),
    output: str = typer.Option(..., "--output", "-o", help="The table to write."),
    deployment: str | None = typer.Option(
        None, "--deployment", "-d", help="Score with what this deployment serves."
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Or with this model: churn, churn/3, churn@champion."
    ),
    mode: str = typer.Option("append", "--mode", help="append or overwrite."),
    on: str = typer.Option(
        "local",
        "--on",
        help="local (in the server) or ray: the table's files read and scored in parallel "
        "on the server's Ray cluster (worker.executor's address, else a Ray instance of its "
        "own; needs loopml[ray] on the server).",
    ),
    project: str = project_option("The project."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a sentence."),
) -> None:
    """Score a table or a file with a deployment's (or a model's) version, into a table.

    The server runs the same runtime as online serving, without HTTP per row. A file is
    uploaded into a staging table first (deleted afterwards). `--on ray` scores the table's
    files in parallel on the server's Ray cluster, with the same output.
    """
    if (deployment is None) == (model is None):
        raise ValidationError("pass --deployment D or --model REF (one of them)")
    check_place(on, option="--on")
    file = Path(input)
    with state(ctx).client() as client:
        if file.is_file():
            with _bar(f"upload {file.name}", file.stat().st_size) as bar:
                result = client.predictions.batch_file(
                    file,
                    output,
                    model=model,
                    deployment=deployment,
                    project=project,
                    mode=mode,
                    progress=bar,
                    on=on,
                )
        else:
            with _spinner(f"scoring {input}{' on Ray' if on == 'ray' else ''} ..."):
                result = client.predictions.batch(
                    input,
                    output,
                    model=model,
                    deployment=deployment,
                    project=project,
                    mode=mode,
                    on=on,
                )
    if json_out:
        as_json(result.model_dump(mode="json"))
        return
    console.print(
        f"scored [bold]{result.rows}[/] rows with {result.model} version {result.version} "
        f"into {result.output} (version {result.output_version})"
    )
    if result.ray_nodes:
        each = ", ".join(f"{node}: {rows:,} rows" for node, rows in result.ray_nodes.items())
        count, actors = len(result.ray_nodes), result.ray_actors
        console.print(
            f"on {count} Ray node{'s' if count > 1 else ''} by {actors} "
            f"actor{'s' if actors > 1 else ''} ({each})"
        )
