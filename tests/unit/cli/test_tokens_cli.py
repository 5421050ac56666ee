"""``loopml tokens`` and ``loopml users`` against a real server with authentication on (the
API app under uvicorn on a free port), driven as a user types them, with ``LOOPML_TOKEN``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from loopml.auth import service
from loopml.cli.main import app
from loopml.client import Client
from loopml.core.errors import PermissionDeniedError, UnauthenticatedError
from loopml.platform import create_api_app
from loopml.settings import Settings
from tests.conftest import free_port
from tests.waiting import eventually

ADMIN_PASSWORD = "a long admin passphrase 1"
PASSWORD = "another long passphrase 2"
CREATE = ["tokens", "create", "ci", "-p", "default", "--role", "editor"]


@dataclass
class Server:
    url: str
    admin_token: str

    def client(self, token: str) -> Client:
        return Client(self.url, token=token)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    home = tmp_path / "server"
    settings = Settings(
        home=home, database={"url": f"sqlite:///{tmp_path / 'db.sqlite'}"}, auth={"enabled": True}
    )
    api = create_api_app(settings)
    port = free_port()
    running = uvicorn.Server(
        uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    eventually(lambda: running.started or not thread.is_alive(), 60, "the server to start")
    assert running.started, "the server's thread ended before it started"
    try:
        store = api.state.running.context.store
        service.create_user(store, "root", ADMIN_PASSWORD, platform_admin=True, actor="test")
        url = f"http://127.0.0.1:{port}"
        with Client(url) as anonymous:
            token = anonymous.login("root", ADMIN_PASSWORD)["token"]
        yield Server(url, token)
    finally:
        running.should_exit = True
        thread.join(30)


@pytest.fixture
def cli(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "cli-home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("LOOPML_CLIENT_URL", server.url)
    monkeypatch.delenv("LOOPML_PROJECT", raising=False)
    return CliRunner()


def _as(monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    monkeypatch.setenv("LOOPML_TOKEN", token)


def test_tokens_create_list_and_revoke(
    server: Server, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as(monkeypatch, server.admin_token)
    made = cli.invoke(
        app,
        [*CREATE, "--resource", "deployment:churn-api", "--days", "7"],
    )
    assert made.exit_code == 0, made.output
    secret = next(line for line in made.stdout.splitlines() if line.startswith("lm_"))
    assert "editor in project default, narrowed to deployment:churn-api" in made.stdout
    assert "will not be shown again" in made.stderr
    with server.client(secret) as client:
        assert client.whoami().resource == "deployment:churn-api"

    scripted = cli.invoke(app, ["tokens", "create", "script", "--days", "1", "-o", "json"])
    assert scripted.exit_code == 0, scripted.output
    answer = json.loads(scripted.stdout)
    assert answer["token"].startswith(f"lm_{answer['prefix']}_")
    assert answer["expires_at"] is not None

    listed = cli.invoke(app, ["tokens", "list", "-o", "json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [t["name"] for t in rows] == ["script", "ci", "login"]
    assert all(t["token"] is None for t in rows)  # never a secret again
    fitted = cli.invoke(app, ["tokens", "list"])
    assert fitted.exit_code == 0, fitted.output
    assert f"lm_{answer['prefix']}" in fitted.stdout
    assert answer["token"] not in fitted.stdout

    # Revoked by the whole token (only its prefix is sent), by prefix and by id.
    by_token = cli.invoke(app, ["tokens", "revoke", secret])
    assert by_token.exit_code == 0, by_token.output
    assert secret not in by_token.stdout
    assert cli.invoke(app, ["tokens", "revoke", f"lm_{answer['prefix']}"]).exit_code == 0
    for gone in (secret, answer["token"]):
        with server.client(gone) as client, pytest.raises(UnauthenticatedError, match="revoked"):
            client.whoami()
    states = cli.invoke(app, ["tokens", "list", "-o", "csv"]).stdout
    assert states.count(",revoked,") == 2
    again = cli.invoke(app, ["tokens", "revoke", "0" * 32])
    assert again.exit_code == 1
    assert "not found" in str(again.exception)


def test_users_and_a_leaked_token_through_the_cli(
    server: Server, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as(monkeypatch, server.admin_token)
    made = cli.invoke(app, ["users", "create", "eddie", "--password-stdin"], input=PASSWORD + "\n")
    assert made.exit_code == 0, made.output
    weak = cli.invoke(app, ["users", "create", "vera", "--password-stdin"], input="short\n")
    assert weak.exit_code == 1
    role = cli.invoke(app, ["users", "role", "default", "eddie", "editor"])
    assert role.exit_code == 0, role.output
    assert "eddie is editor in project default" in role.stdout
    users = json.loads(cli.invoke(app, ["users", "list", "-o", "json"]).stdout)
    # The server's own user (its embedded worker's steps act as it) is listed too.
    assert [(u["name"], u["platform_admin"]) for u in users] == [
        ("eddie", False),
        ("loopml-server", True),
        ("root", True),
    ]
    members = json.loads(cli.invoke(app, ["users", "members", "default", "-o", "json"]).stdout)
    assert members == [{"user": "eddie", "project": "default", "role": "editor"}]

    # Eddie makes a token, which leaks; it is found and revoked by its prefix alone.
    with Client(server.url) as anonymous:
        eddie = anonymous.login("eddie", PASSWORD)["token"]
    with server.client(eddie) as client:
        leaked = client.tokens.create("laptop", project="default", role="viewer")
        assert leaked.token is not None
        with pytest.raises(PermissionDeniedError):
            client.users.list()  # only platform admins
        with pytest.raises(PermissionDeniedError):
            client.tokens.find(leaked.prefix)
    _as(monkeypatch, eddie)
    refused = cli.invoke(app, ["tokens", "lookup", leaked.prefix])
    assert refused.exit_code == 1
    assert "platform admin" in str(refused.exception)

    _as(monkeypatch, server.admin_token)
    found = cli.invoke(app, ["tokens", "lookup", f"lm_{leaked.prefix}", "-o", "json"])
    assert found.exit_code == 0, found.output
    shown = json.loads(found.stdout)
    assert (shown["user"], shown["name"], shown["role"]) == ("eddie", "laptop", "viewer")
    # Without --any-user, a token is looked for among the caller's own only.
    assert cli.invoke(app, ["tokens", "revoke", leaked.prefix]).exit_code == 1
    revoked = cli.invoke(app, ["tokens", "revoke", "--any-user", leaked.token])
    assert revoked.exit_code == 0, revoked.output
    assert f"lm_{leaked.prefix}" in revoked.stdout
    assert "'laptop' of user eddie" in revoked.stdout
    with server.client(leaked.token) as client, pytest.raises(UnauthenticatedError):
        client.whoami()
    with server.client(eddie) as client:
        assert client.whoami().user == "eddie"  # the user's other tokens still work


def test_users_disable_enable_and_remove_member_through_the_cli(
    server: Server, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as(monkeypatch, server.admin_token)
    made = cli.invoke(app, ["users", "create", "eddie", "--password-stdin"], input=PASSWORD + "\n")
    assert made.exit_code == 0, made.output
    assert cli.invoke(app, ["users", "role", "default", "eddie", "editor"]).exit_code == 0
    with Client(server.url) as anonymous:
        eddie = anonymous.login("eddie", PASSWORD)["token"]

    removed = cli.invoke(app, ["users", "remove-member", "default", "eddie"])
    assert removed.exit_code == 0, removed.output
    assert "eddie is no longer a member of project default" in removed.stdout
    assert json.loads(cli.invoke(app, ["users", "members", "default", "-o", "json"]).stdout) == []
    twice = cli.invoke(app, ["users", "remove-member", "default", "eddie"])
    assert twice.exit_code == 1
    assert "no member" in str(twice.exception)

    itself = cli.invoke(app, ["users", "disable", "root"])
    assert itself.exit_code == 1
    assert "cannot disable yourself" in str(itself.exception)
    disabled = cli.invoke(app, ["users", "disable", "eddie"])
    assert disabled.exit_code == 0, disabled.output
    assert "eddie disabled; its tokens and sessions are revoked" in disabled.stdout
    with server.client(eddie) as client, pytest.raises(UnauthenticatedError, match="revoked"):
        client.whoami()
    with Client(server.url) as anonymous, pytest.raises(UnauthenticatedError, match="disabled"):
        anonymous.login("eddie", PASSWORD)
    users = json.loads(cli.invoke(app, ["users", "list", "-o", "json"]).stdout)
    assert {u["name"]: u["disabled"] for u in users}["eddie"] is True
    assert cli.invoke(app, ["users", "enable", "eddie"]).exit_code == 0
    with Client(server.url) as anonymous:
        assert anonymous.login("eddie", PASSWORD)["token"].startswith("lm_")
