"""``loopml deployments show`` (and ``deploy``, ``deployments update``) says what its
``auth: token`` means on this server: with authentication off no token is checked, and the
line said only ``token`` (issue 55)."""

from __future__ import annotations

import re

from .conftest import Platform, make_deployment


def test_the_auth_line_says_no_token_is_checked_while_authentication_is_off(
    platform: Platform,
) -> None:
    with platform.client() as client:
        client.projects.create("authline")
    make_deployment(platform, "authline", "scorer")
    # At the suite's 80 columns (a wider COLUMNS would stay the width of the CLI's console
    # for the rest of the process) the cell folds: read the table's words in order.
    shown = platform.cli("deployments", "show", "scorer", "-p", "authline")
    assert shown.exit_code == 0, shown.stdout
    words = " ".join(re.sub("[│┃]", " ", shown.stdout).split())
    said = "auth token, once authentication is on (it is off on this server: no token is checked)"
    assert said in words, shown.stdout
    as_json = platform.cli("deployments", "show", "scorer", "-p", "authline", "--json")
    assert '"auth": "token"' in as_json.stdout, as_json.stdout
