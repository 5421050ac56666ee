"""``loopml login``: trade a password for an API token, kept in the user's config (0600)."""

from __future__ import annotations

import typer

from loopml.cli._context import state
from loopml.cli._output import console
from loopml.cli._token import save_token


def login(
    ctx: typer.Context,
    user: str = typer.Option(..., "--user", "-u", prompt=True, help="Your user name."),
    days: int = typer.Option(30, "--days", min=1, max=365, help="Days the token is valid."),
) -> None:
    """Log in to the server: the new token is stored for the CLI (0600)."""
    password = typer.prompt("Password", hide_input=True)
    client = state(ctx).client()
    answer = client.login(user, password, expires_in_days=days)
    path = save_token(answer["token"])
    console.print(f"logged in as [bold]{user}[/]; token {answer['prefix']} stored in {path}")
