"""``loopml db``: the metadata database (runs on the server's side, not through the API)."""

from __future__ import annotations

import typer

from loopml.cli._context import state
from loopml.cli._output import console

app = typer.Typer(help="Manage the metadata database.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Upgrade the database schema to this version of loopml."""
    from loopml.wiring import open_metadata_store

    store = open_metadata_store(state(ctx).settings)
    try:
        before = store.current_revision()
        after = store.upgrade()
    finally:
        store.dispose()
    change = "already at" if before == after else f"upgraded from {before or 'empty'} to"
    console.print(f"database {store.safe_url}: {change} revision [bold]{after}[/]")


@app.command("current")
def current(ctx: typer.Context) -> None:
    """Show the database's schema revision and whether it needs an upgrade."""
    from loopml.wiring import open_metadata_store

    store = open_metadata_store(state(ctx).settings)
    try:
        revision, head = store.current_revision(), store.head_revision()
    finally:
        store.dispose()
    note = "up to date" if revision == head else f"needs `loopml db upgrade` to {head}"
    console.print(f"database {store.safe_url}: revision {revision or 'none'} ({note})")


@app.command("downgrade")
def downgrade(
    revision: str = typer.Argument("", metavar="[REVISION]", help="Ignored: always refused."),
) -> None:
    """Refused: loopml never downgrades a schema (restore a backup instead)."""
    from loopml.core.errors import ConflictError

    raise ConflictError(
        "loopml never downgrades a database schema: a migration may drop or rewrite what an "
        "older version cannot read back. To go back to an older loopml, restore the backup "
        "taken before the upgrade (see docs/operations.md, Upgrading)",
        details={"revision": revision or None},
    )
