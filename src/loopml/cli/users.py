"""``loopml users``: users and their roles in projects, through the API; and the first admin,
made on the server's side (there is no default one)."""

from __future__ import annotations

import sys

import typer

from loopml.cli._context import state
from loopml.cli._output import check_output, console, listing, output_option, when, wide_option

app = typer.Typer(
    help="Users and their roles in projects (create-admin works on the server's side).",
    no_args_is_help=True,
)
PASSWORD_STDIN = typer.Option(
    False, "--password-stdin", help="Read the password from standard input (scripts)."
)


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
    password_stdin: bool = PASSWORD_STDIN,
) -> None:
    """Create a platform admin in the configured database (prompts for the password)."""
    from loopml.auth import passwords, service
    from loopml.wiring import open_metadata_store

    password = _read_password(password_stdin)
    passwords.check_policy(password, name)
    store = open_metadata_store(state(ctx).settings)
    try:
        store.prepare()  # a new home's first command may be this one
        user = service.create_user(store, name, password, platform_admin=True, actor="cli")
    finally:
        store.dispose()
    console.print(f"platform admin [bold]{user.name}[/] created; log in with `loopml login`")


@app.command("list")
def list_users(
    ctx: typer.Context, output: str = output_option(), wide: bool = wide_option()
) -> None:
    """List every user (platform admins)."""
    shape = check_output(output, wide)
    with state(ctx).client() as client:
        items = client.users.list()
    rows = [
        (
            u.name,
            "yes" if u.platform_admin else "no",
            "yes" if u.disabled else "no",
            when(u.created_at),
        )
        for u in items
    ]
    records = [u.model_dump(mode="json") for u in items]
    listing(["name", "platform admin", "disabled", "created"], rows, shape, records=records)


@app.command("create")
def create_user(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The user name (lowercase letters, digits, . _ -)."),
    admin: bool = typer.Option(False, "--admin", help="Make a platform admin."),
    password_stdin: bool = PASSWORD_STDIN,
) -> None:
    """Add a user through the server (platform admins; prompts for the password)."""
    password = _read_password(password_stdin)
    with state(ctx).client() as client:
        user = client.users.create(name, password, platform_admin=admin)
    kind = "platform admin" if user.platform_admin else "user"
    console.print(
        f"{kind} [bold]{user.name}[/] created; give it a role with "
        f"`loopml users role PROJECT {user.name} viewer|editor|admin`",
        highlight=False,
        soft_wrap=True,
    )


@app.command("disable")
def disable_user(
    ctx: typer.Context, name: str = typer.Argument(..., help="The user to disable.")
) -> None:
    """Disable a user: its tokens and sessions are revoked and it can no longer log in
    (platform admins; not yourself, nor the last platform admin)."""
    with state(ctx).client() as client:
        user = client.users.disable(name)
    console.print(
        f"user [bold]{user.name}[/] disabled; its tokens and sessions are revoked "
        f"(`loopml users enable {user.name}` lets it log in again)",
        highlight=False,
        soft_wrap=True,
    )


@app.command("enable")
def enable_user(
    ctx: typer.Context, name: str = typer.Argument(..., help="The user to enable.")
) -> None:
    """Let a disabled user log in again (platform admins); its old tokens stay revoked."""
    with state(ctx).client() as client:
        user = client.users.enable(name)
    console.print(f"user [bold]{user.name}[/] enabled", highlight=False, soft_wrap=True)


@app.command("remove-member")
def remove_member(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="The project."),
    user: str = typer.Argument(..., help="The user."),
) -> None:
    """Take a user's role in a project away (project admins)."""
    with state(ctx).client() as client:
        client.users.remove_member(project, user)
    console.print(
        f"[bold]{user}[/] is no longer a member of project [bold]{project}[/]",
        highlight=False,
        soft_wrap=True,
    )


@app.command("role")
def set_role(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="The project."),
    user: str = typer.Argument(..., help="The user."),
    role: str = typer.Argument(..., help="viewer, editor or admin."),
) -> None:
    """Give a user a role in a project, replacing any it had (project admins)."""
    with state(ctx).client() as client:
        member = client.users.set_role(project, user, role)
    console.print(
        f"[bold]{member.user}[/] is {member.role} in project [bold]{member.project}[/]",
        highlight=False,
        soft_wrap=True,
    )


@app.command("members")
def members(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="The project."),
    output: str = output_option(),
    wide: bool = wide_option(),
) -> None:
    """List a project's members and their roles (project admins)."""
    shape = check_output(output, wide)
    with state(ctx).client() as client:
        items = client.users.members(project)
    rows = [(m.user, m.role) for m in items]
    records = [m.model_dump(mode="json") for m in items]
    listing(["user", "role"], rows, shape, records=records)
