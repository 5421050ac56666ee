"""``loopml users``: the first admin, made on the server's side (there is no default one)."""

from __future__ import annotations

import sys

import typer

from loopml.cli._context import state
from loopml.cli._output import console

app = typer.Typer(help="Manage users (on the server's side).", no_args_is_help=True)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = typer.prompt("Password (12 characters or more)", hide_input=True)
    second = typer.prompt("Repeat it", hide_input=True)
    if first != second:
        from loopml.core.errors import ValidationError

        raise ValidationError("the two passwords differ")
    return str(first)


@app.command("create-admin")
def create_admin(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The admin's user name."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input (scripts)."
    ),
) -> None:
    """Create a platform admin in the configured database (prompts for the password)."""
    from loopml.auth import passwords, service
    from loopml.wiring import open_metadata_store

    password = _read_password(password_stdin)
    passwords.check_policy(password, name)
    store = open_metadata_store(state(ctx).settings)
    try:
        if store.needs_upgrade():
            store.upgrade()
        user = service.create_user(store, name, password, platform_admin=True, actor="cli")
    finally:
        store.dispose()
    console.print(f"platform admin [bold]{user.name}[/] created; log in with `loopml login`")
