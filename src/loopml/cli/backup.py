"""``loopml backup`` and ``loopml restore``: snapshots of the whole platform (run on the
server's side: they open the stores themselves, with or without a server running)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from loopml.cli._context import state
from loopml.cli._output import console, err_console, table

UNFINISHED_EXIT = 3
"""`loopml restore`'s exit code when the restore is done but left a step to do by hand."""

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from loopml.backup import BackupVault


class _Bars:
    """The library's progress reports as Rich bars on stderr."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def begin(self, what: str, total: int | None) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.progress.tasks[-1].total)
        self.task = self.progress.add_task(what, total=total)

    def advance(self, count: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, count)


@contextmanager
def _bars() -> Iterator[_Bars]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=err_console, transient=True) as bars:
        yield _Bars(bars)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def _passphrase(path: Path | None, confirm: bool) -> str:
    if path is not None:
        return path.read_text().rstrip("\n")
    return str(typer.prompt("Backup passphrase", hide_input=True, confirmation_prompt=confirm))


def _list(vault: BackupVault) -> None:
    rows = [
        (
            m.id,
            m.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
            _size(m.size),
            len(m.files),
            _size(m.new_bytes),
            f"{m.seconds:.1f}",
            m.source_database + (" +secrets" if m.secrets else ""),
        )
        for m in vault.manifests()
    ]
    table(
        f"snapshots in {vault.uri}",
        ("id", "time", "size", "files", "new", "seconds", "source"),
        rows,
    )


def backup(
    ctx: typer.Context,
    dest: str = typer.Argument(..., help="A folder, or s3://bucket/prefix."),
    list_: bool = typer.Option(False, "--list", help="List the snapshots in DEST; take none."),
    keep: int | None = typer.Option(
        None, "--keep", min=1, help="After the backup, keep only the N newest snapshots."
    ),
    include_secrets: bool = typer.Option(
        False,
        "--include-secrets",
        help="Also keep the install secret (it keys API tokens), encrypted with a passphrase.",
    ),
    passphrase_file: Path | None = typer.Option(
        None, "--passphrase-file", help="Read the passphrase from this file instead of asking."
    ),
) -> None:
    """Back up the whole platform into DEST while it runs: the metadata database, the
    artifact store and lake tables, the online store and the settings (without secrets
    unless --include-secrets). A backup into the same DEST stores only what changed."""
    from loopml.backup import open_vault, take_backup

    settings = state(ctx).settings
    vault = open_vault(dest, settings, create=not list_)
    if list_:
        _list(vault)
        return
    passphrase = _passphrase(passphrase_file, True) if include_secrets else None
    with _bars() as bars:
        manifest, vanished = take_backup(settings, vault, passphrase=passphrase, reporter=bars)
    console.print(
        f"snapshot [bold]{manifest.id}[/] in {vault.uri}: {len(manifest.files)} files, "
        f"{_size(manifest.size)} ({_size(manifest.new_bytes)} new in {manifest.new_files} "
        f"blobs), {len(manifest.lake)} lake tables, schema {manifest.schema_revision}, "
        f"{manifest.seconds:.1f} s" + (", install secret encrypted" if manifest.secrets else "")
    )
    if vanished:
        err_console.print(
            f"warning: {len(vanished)} artifacts were deleted while they were being copied "
            f"(first: {vanished[0]}); the snapshot's metadata may still name them"
        )
    if keep is not None:
        pruned = vault.prune(keep)
        console.print(
            f"kept the {keep} newest snapshots: removed {len(pruned.snapshots)} snapshots and "
            f"{pruned.blobs} blobs ({_size(pruned.bytes)})"
        )


def restore(
    ctx: typer.Context,
    src: str = typer.Argument(..., help="The backup: a folder, or s3://bucket/prefix."),
    snapshot: str | None = typer.Option(
        None, "--snapshot", help="The snapshot's id (see `loopml backup --list`); default newest."
    ),
    verify_only: bool = typer.Option(
        False, "--verify", help="Only check every file of the snapshot; restore nothing."
    ),
    passphrase_file: Path | None = typer.Option(
        None, "--passphrase-file", help="The passphrase of a backup taken --include-secrets."
    ),
    skip_secrets: bool = typer.Option(
        False, "--skip-secrets", help="Do not restore the install secret (asks no passphrase)."
    ),
) -> None:
    """Restore a snapshot into the empty home, database and artifact store the settings
    name (LOOPML_HOME, LOOPML_DATABASE_URL, LOOPML_ARTIFACTS_ROOT). Every file is checked
    against its hash first; a damaged backup is refused and nothing is written."""
    from loopml.backup import open_vault, restore_backup, verify
    from loopml.backup.restore import pick

    settings = state(ctx).settings
    vault = open_vault(src, settings, create=False)
    manifest = pick(vault, snapshot)
    if verify_only:
        with _bars() as bars:
            verify(vault, manifest, bars)
        console.print(f"snapshot {manifest.id}: {len(manifest.files)} files, all intact")
        return
    passphrase = None
    if manifest.secrets is not None and not skip_secrets:
        passphrase = _passphrase(passphrase_file, False)
    with _bars() as bars:
        done = restore_backup(settings, vault, manifest.id, passphrase=passphrase, reporter=bars)
    rows = "" if done.rows is None else f", {done.rows} database rows loaded"
    console.print(
        f"restored snapshot [bold]{manifest.id}[/] ({manifest.created_at:%Y-%m-%d %H:%M:%S} "
        f"UTC) into {settings.home}: {done.files} files, {_size(done.bytes)}{rows}"
    )
    if done.online:
        console.print(
            f"online store refilled from the lake: {len(done.online)} feature views, "
            f"{sum(done.online.values())} entities"
        )
    for note in done.notes:
        err_console.print(f"note: {note}")
    if done.unfinished:
        for step in done.unfinished:
            err_console.print(f"[bold red]not done[/]: {step}")
        # Everything else is restored and stays; a script must not start serving features
        # from a half-filled online store without noticing.
        raise typer.Exit(UNFINISHED_EXIT)
