"""GET /api/v1/logs: the server's own log file searched by text and level, newest first
back through its rotated copies; platform admins only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.auth import service
from loopml.client import Client
from loopml.core.errors import NotFoundError, PermissionDeniedError
from loopml.platform import create_api_app
from loopml.settings import Settings

from .test_auth import ADMIN_PASSWORD, login, make_user

OLDER = [
    "2026-05-01 10:00:00,000 INFO uvicorn.error: Started server process [4242]",
    "2026-05-01 10:00:01,000 ERROR loopml.monitor: window failed",
    "Traceback (most recent call last):",
    "ValueError: column 'age' is missing",
]
NEWER = [
    "2026-05-01 10:05:00,000 INFO loopml.reconciler: reconciled churn-api",
    "2026-05-01 10:05:01,000 WARNING loopml.automation: schedule nightly is late",
    "2026-05-01 10:05:02,000 INFO uvicorn.error: Application startup complete.",
]


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.fixture
def logged(settings: Settings) -> Path:
    """The server's log as it stands after a rotation: ``OLDER`` in ``loopml.log.1``."""
    path = settings.home / "logs" / "loopml.log"
    _write(path.with_name("loopml.log.1"), OLDER)
    _write(path, NEWER)
    return path


def test_the_last_lines_searched_by_text_and_level_across_the_rotated_copy(
    client: Client, logged: Path
) -> None:
    assert client.platform_logs() == OLDER + NEWER
    assert client.platform_logs(tail=2) == NEWER[-2:]
    assert client.platform_logs(grep="STARTUP") == [NEWER[-1]]
    # The error and its traceback are in the rotated copy, under three newer lines.
    assert client.platform_logs(level="error") == OLDER[1:]
    assert client.platform_logs(level="warning", tail=2) == [OLDER[-1], NEWER[1]]
    assert client.platform_logs(grep="age", level="error") == [OLDER[-1]]


def test_a_bad_level_or_a_long_text_is_422(http: TestClient, logged: Path) -> None:
    assert http.get("/api/v1/logs", params={"level": "loud"}).status_code == 422
    assert http.get("/api/v1/logs", params={"grep": "x" * 201}).status_code == 422
    assert http.get("/api/v1/logs", params={"tail": 0}).status_code == 422


def test_a_server_that_keeps_no_file_says_so(tmp_path: Path, migrated_database_url: str) -> None:
    settings = Settings(
        home=tmp_path / "home", database={"url": migrated_database_url}, server={"log_file": ""}
    )
    with (
        TestClient(create_api_app(settings), base_url="http://127.0.0.1") as http,
        pytest.raises(NotFoundError, match=r"server\.log_file is empty"),
    ):
        Client(http=http).platform_logs()


@pytest.fixture
def authed(tmp_path: Path, migrated_database_url: str) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path / "home", database={"url": migrated_database_url}, auth={"enabled": True}
    )
    _write(settings.home / "logs" / "loopml.log", NEWER)
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as http:
        store = http.app.state.running.context.store  # type: ignore[attr-defined]
        service.create_user(store, "root", ADMIN_PASSWORD, platform_admin=True, actor="test")
        yield http


def test_only_a_platform_admin_reads_the_servers_log(authed: TestClient) -> None:
    admin = login(authed, "root", ADMIN_PASSWORD)
    assert authed.get("/api/v1/logs").status_code == 401
    project_admin = make_user(authed, admin, "pat", "default", "admin")
    for role, caller in [
        ("viewer", make_user(authed, admin, "vic", "default", "viewer")),
        ("editor", make_user(authed, admin, "eddie", "default", "editor")),
        ("project admin", project_admin),
    ]:
        answer = authed.get("/api/v1/logs", headers=caller)
        assert answer.status_code == 403, role
        assert "Application startup" not in answer.text
    token = project_admin["authorization"].removeprefix("Bearer ")
    sdk = Client(http=TestClient(authed.app, base_url="http://127.0.0.1"), token=token)
    with pytest.raises(PermissionDeniedError):
        sdk.platform_logs()
    answer = authed.get("/api/v1/logs", headers=admin)
    assert answer.status_code == 200
    assert answer.json()["lines"] == NEWER
