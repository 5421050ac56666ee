"""``loopml codesets``: versioned trees of training code (docs/codesets.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from loopml.cli._context import project_option, state
from loopml.cli._list_command import add_list_command
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

if TYPE_CHECKING:
    from loopml.core.codesets import Codeset
    from loopml.settings import Settings
    from loopml.storage.codetree import TreeLimits

app = typer.Typer(
    help="Codesets: immutable, content-addressed versions of a folder or a git commit.",
    no_args_is_help=True,
)

PROJECT = project_option("The project that owns the codesets.")
JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
NAME = typer.Argument(..., help="The codeset's name.")
VERSION = typer.Option(None, "--version", "-v", min=1, help="Default: the newest.")


def _limits(settings: Settings) -> TreeLimits:
    from loopml.storage.codetree import TreeLimits

    return TreeLimits(settings.codesets.max_bytes, settings.codesets.max_files)


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "-"


@app.command("register")
def register(
    ctx: typer.Context,
    name: str = NAME,
    source: str = typer.Argument(
        ...,
        help="A folder (.gitignore respected), PATH@REF (a commit of a local repository) "
        "or GIT_URL[@REF] (cloned).",
    ),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Register a version: a new one when the files changed, the same one when not."""
    cli = state(ctx)
    with cli.client() as client:
        made = client.codesets.register(name, source, project=project, limits=_limits(cli.settings))
    if json_out:
        as_json(made.model_dump(mode="json"))
        return
    found = made.version
    verb = "registered as" if made.created else "unchanged at"
    commit = f", commit {_short(found.commit)}" if found.commit else ""
    console.print(
        f"codeset {name} {verb} version {found.version}: {found.file_count} files, "
        f"{found.size} bytes, content {found.content_hash[:12]}{commit}",
        highlight=False,
    )


def _codeset_row(c: Codeset) -> list[Any]:
    return [
        c.name,
        c.latest_version,
        _short(c.latest.commit if c.latest else None),
        c.latest.file_count if c.latest else 0,
        when(c.latest.created_at) if c.latest else "-",
        c.repository or "-",
    ]


add_list_command(
    app,
    help="The project's codesets at their newest versions.",
    project_option=PROJECT,
    json_option=JSON,
    fetch=lambda client, project: client.codesets.list(project),
    columns=["name", "version", "commit", "files", "registered", "webhook repository"],
    row=_codeset_row,
)


@app.command("versions")
def versions(
    ctx: typer.Context,
    name: str = NAME,
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = JSON,
) -> None:
    """A codeset's versions, newest first."""
    shape = check_output(output, wide, json_out)
    with state(ctx).client() as client:
        found = client.codesets.versions(name, project=project)
    rows = [
        [
            v.version,
            v.content_hash[:12],
            _short(v.commit),
            v.file_count,
            v.size,
            when(v.created_at),
            v.actor,
            v.source,
        ]
        for v in found
    ]
    columns = ["version", "content", "commit", "files", "bytes", "registered", "by", "source"]
    listing(columns, rows, shape, required=2, records=[v.model_dump(mode="json") for v in found])


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = NAME,
    version: int | None = VERSION,
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """One version with its files and their SHA-256s."""
    with state(ctx).client() as client:
        found = client.codesets.version(name, version, project=project)
    if json_out:
        as_json(found.model_dump(mode="json"))
        return
    console.print(
        f"codeset [bold]{found.codeset}[/] version {found.version}: {found.file_count} files, "
        f"{found.size} bytes",
        highlight=False,
    )
    console.print(f"content: {found.content_hash}", highlight=False)
    console.print(f"commit: {found.commit or '-'}", highlight=False)
    console.print(f"source: {found.source}", highlight=False, markup=False)
    console.print(f"registered: {when(found.created_at)} by {found.actor}", highlight=False)
    files = found.files or []
    table(
        None,
        ["path", "bytes", "sha256", "x"],
        [[f.path, f.size, f.sha256, "x" if f.executable else ""] for f in files],
    )


@app.command("download")
def download(
    ctx: typer.Context,
    name: str = NAME,
    destination: Path = typer.Argument(..., help="A new (or empty) folder."),
    version: int | None = VERSION,
    project: str = PROJECT,
) -> None:
    """Write a version's files into a folder."""
    cli = state(ctx)
    with cli.client() as client:
        written = client.codesets.download(
            name, destination, version, project=project, limits=_limits(cli.settings)
        )
    console.print(f"{len(written)} files written to {destination}", highlight=False)


@app.command("webhook")
def webhook(
    ctx: typer.Context,
    name: str = NAME,
    repository: str | None = typer.Option(
        None, "--repository", help="A git repository on the server (codesets.repository_roots)."
    ),
    branch: str | None = typer.Option(None, "--branch", help="Follow only this branch."),
    remove: bool = typer.Option(False, "--remove", help="Remove the webhook."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Set the push webhook that registers each new commit (prints its secret once)."""
    from loopml.core.errors import ValidationError

    if remove == (repository is not None):
        raise ValidationError("give --repository PATH, or --remove")
    with state(ctx).client() as client:
        if repository is None:
            client.codesets.delete_webhook(name, project=project)
            console.print(f"webhook of codeset {name} removed", highlight=False)
            return
        made = client.codesets.set_webhook(name, repository, branch=branch, project=project)
    if json_out:
        as_json(made.model_dump(mode="json"))
        return
    console.print(f"POST {made.path}", highlight=False, markup=False)
    console.print(f"secret (shown once): {made.secret}", highlight=False, markup=False)
    follows = made.branch or "every branch"
    console.print(f"reads {made.repository}, follows {follows}", highlight=False, markup=False)
