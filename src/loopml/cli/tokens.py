"""``loopml tokens``: make, list and revoke API tokens; find and revoke a leaked one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer

from loopml.cli._context import state
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
    from loopml.core.auth import ApiToken

app = typer.Typer(
    help="Your API tokens: create, list, revoke; a platform admin finds and revokes anyone's "
    "by prefix.",
    no_args_is_help=True,
)

_SHAPES = ("table", "json")
SHAPE = typer.Option("table", "--output", "-o", help="table or json (for scripts).")


def _shape(output: str) -> str:
    from loopml.core.errors import ValidationError

    if output not in _SHAPES:
        raise ValidationError(f"--output {output!r}: expected one of {', '.join(_SHAPES)}")
    return output


def _state(token: ApiToken, now: datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


def _scope(token: ApiToken) -> str:
    where = f"in project {token.project}" if token.project else "in every project of its user"
    narrowed = f", narrowed to {token.resource}" if token.resource else ""
    return f"{token.role} {where}{narrowed}"


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="What the token is for ('ci', 'churn-api client')."),
    project: str | None = typer.Option(
        None, "--project", "-p", help="The one project it acts in (default: all of yours)."
    ),
    role: str | None = typer.Option(
        None, "--role", help="viewer, editor or admin; at most yours (default: yours)."
    ),
    resource: str | None = typer.Option(
        None,
        "--resource",
        help="Narrow it to one resource: deployment:NAME, experiment:NAME, table:NAME or "
        "model:NAME (needs --project).",
    ),
    days: int = typer.Option(30, "--days", min=1, max=365, help="Days until it expires."),
    output: str = SHAPE,
) -> None:
    """Make a token; its secret is printed once and never again."""
    shape = _shape(output)
    with state(ctx).client() as client:
        made = client.tokens.create(
            name, project=project, role=role, resource=resource, expires_in_days=days
        )
    if shape == "json":
        as_json(made.model_dump(mode="json"))
        return
    expires = when(made.expires_at) if made.expires_at else "never"
    console.print(
        f"token [bold]{made.name}[/] (lm_{made.prefix}): {_scope(made)}; expires {expires}",
        highlight=False,
        soft_wrap=True,
    )
    print(made.token)
    err_console.print("Copy it now: it is not stored and will not be shown again.", style="yellow")


@app.command("list")
def list_tokens(
    ctx: typer.Context, output: str = output_option(), wide: bool = wide_option()
) -> None:
    """List your tokens, newest first (revoked and expired ones too; never secrets)."""
    shape = check_output(output, wide)
    with state(ctx).client() as client:
        items = client.tokens.list()
    now = datetime.now(UTC)
    rows = [
        (
            f"lm_{t.prefix}",
            t.name,
            _state(t, now),
            t.project,
            t.role,
            t.resource,
            when(t.expires_at) if t.expires_at else "never",
            when(t.last_used_at) if t.last_used_at else None,
            when(t.created_at),
            t.id,
        )
        for t in items
    ]
    columns = ["prefix", "name", "state", "project", "role", "resource", "expires"]
    columns += ["last used", "created", "id"]
    listing(columns, rows, shape, required=3, records=[t.model_dump(mode="json") for t in items])


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    token: str = typer.Argument(
        ..., help="The token's id, its prefix (lm_3f9a1c2b), or the whole token."
    ),
    any_user: bool = typer.Option(
        False,
        "--any-user",
        help="Platform admins: revoke whoever's token has this prefix (a leaked one).",
    ),
) -> None:
    """Revoke a token: it is refused from the next request on."""
    with state(ctx).client() as client:
        if not any_user:
            client.tokens.revoke(token)
            console.print(
                f"revoked token [bold]{_shown(token)}[/]", highlight=False, soft_wrap=True
            )
            return
        found = client.tokens.find(token)
        client.tokens.revoke_any(token)
    console.print(
        f"revoked token [bold]lm_{found.prefix}[/] ({found.name!r} of user {found.user})",
        highlight=False,
        soft_wrap=True,
    )


@app.command("lookup")
def lookup(
    ctx: typer.Context,
    prefix: str = typer.Argument(..., help="The prefix (lm_3f9a1c2b), or the whole token."),
    output: str = SHAPE,
) -> None:
    """Platform admins: whose token has this prefix, its scope, expiry, last use and state."""
    shape = _shape(output)
    with state(ctx).client() as client:
        found = client.tokens.find(prefix)
    if shape == "json":
        as_json(found.model_dump(mode="json"))
        return
    rows = [
        ("prefix", f"lm_{found.prefix}"),
        ("user", found.user),
        ("name", found.name),
        ("state", _state(found, datetime.now(UTC))),
        ("project", found.project or "every project of its user"),
        ("role", found.role),
        ("resource", found.resource),
        ("created", when(found.created_at)),
        ("expires", when(found.expires_at) if found.expires_at else "never"),
        ("last used", when(found.last_used_at) if found.last_used_at else "never"),
        ("revoked", when(found.revoked_at) if found.revoked_at else None),
        ("id", found.id),
    ]
    table(None, ["field", "value"], rows)


def _shown(token: str) -> str:
    # Echo what was revoked without echoing a secret pasted whole.
    from loopml.core.auth import parse_token_ref

    kind, value = parse_token_ref(token.strip())
    return value if kind == "id" else f"lm_{value}"
