"""``loopml artifacts``: a project's files, with progress bars for transfers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from loopml.cli._context import project_option, state
from loopml.cli._output import (
    check_output,
    console,
    err_console,
    listing,
    output_option,
    when,
    wide_option,
)

if TYPE_CHECKING:
    from loopml.client.artifacts import Progress as ProgressCallback

app = typer.Typer(help="Upload, download, list and delete a project's files.", no_args_is_help=True)

PROJECT = project_option("The project that owns the files.")


@contextmanager
def _bar(label: str, total: int | None) -> Iterator[ProgressCallback]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    quiet = not err_console.is_terminal  # no bar, nor its blank line, in logs and pipes
    with Progress(*columns, console=err_console, transient=True, disable=quiet) as progress:
        task = progress.add_task(label, total=total)
        yield lambda size: progress.advance(task, size)


@app.command("ls")
def list_artifacts(
    ctx: typer.Context,
    prefix: str = typer.Argument("", help="Only under this folder."),
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List files, by key."""
    shape = check_output(output, wide, json_out)
    with state(ctx).client() as client:
        items = list(client.artifacts.iter(project, prefix=prefix))
    rows = [(a.key, a.size, when(a.modified)) for a in items]
    records = [a.model_dump(mode="json") for a in items]
    listing(["key", "bytes", "modified"], rows, shape, records=records)


@app.command("upload")
def upload(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    key: str | None = typer.Argument(None, help="Where to store it (default: the file name)."),
    project: str = PROJECT,
) -> None:
    """Upload a file (streamed, hashed, atomic)."""
    target = key or file.name
    with state(ctx).client() as client, _bar(f"upload {target}", file.stat().st_size) as bar:
        info = client.artifacts.upload(project, file, target, progress=bar)
    console.print(f"uploaded [bold]{info.key}[/] ({info.size} bytes, sha256 {info.sha256})")


@app.command("download")
def download(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="The file's key."),
    dest: Path | None = typer.Argument(None, help="Where to write it (default: its name)."),
    project: str = PROJECT,
) -> None:
    """Download a file; it appears at DEST only once complete."""
    target = dest or Path(key.rsplit("/", 1)[-1])
    with state(ctx).client() as client:
        size = client.artifacts.stat(project, key).size
        with _bar(f"download {key}", size) as bar:
            client.artifacts.download(project, key, target, progress=bar)
    console.print(f"downloaded [bold]{key}[/] to {target}")


@app.command("rm")
def remove(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="The file's key."),
    project: str = PROJECT,
) -> None:
    """Delete a file."""
    with state(ctx).client() as client:
        client.artifacts.delete(project, key)
    console.print(f"deleted [bold]{key}[/]")
