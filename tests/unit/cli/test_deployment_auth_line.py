"""``loopml deployments show`` (and ``deploy``, ``deployments update``) says what its
``auth: token`` means on this server: with authentication off no token is checked, and the
line said only ``token`` (issue 55)."""

from __future__ import annotations

from .conftest import Platform, make_deployment


def test_the_auth_line_says_no_token_is_checked_while_authentication_is_off(
    platform: Platform,
) -> None:
    with platform.client() as client:
        client.projects.create("authline")
    make_deployment(platform, "authline", "scorer")
    shown = platform.cli("deployments", "show", "scorer", "-p", "authline", env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.stdout
    line = next(row for row in shown.stdout.splitlines() if "│ auth " in row)
    assert "token, once authentication is on (it is off on this server" in line, line
    as_json = platform.cli("deployments", "show", "scorer", "-p", "authline", "--json")
    assert '"auth": "token"' in as_json.stdout, as_json.stdout
