"""The portal in-process: the platform's real app (API and portal) on a real database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.auth import service
from loopml.core.auth import Role
from loopml.platform import create_app
from loopml.settings import Settings

ADMIN = ("root", "a long admin passphrase 1")
VIEWER = ("vera", "a long viewer passphrase 1")
ORIGIN = "http://127.0.0.1"


def portal_settings(tmp_path: Path, migrated_database_url: str, *, auth: bool) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        auth={"enabled": auth, "login_failures_per_minute": 20},
    )


def csrf_of(page: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def log_in(http: TestClient, user: tuple[str, str]) -> None:
    """Log in through the login form, as a browser would."""
    token = csrf_of(http.get("/login").text)
    answer = http.post(
        "/portal/login",
        data={"user": user[0], "password": user[1], "csrf_token": token, "next": "/"},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text


@pytest.fixture
def anonymous(tmp_path: Path, migrated_database_url: str) -> Iterator[TestClient]:
    """Authentication off: the local operator sees everything."""
    app = create_app(portal_settings(tmp_path, migrated_database_url, auth=False))
    with TestClient(app, base_url=ORIGIN) as client:
        yield client


@pytest.fixture
def secured(tmp_path: Path, migrated_database_url: str) -> Iterator[TestClient]:
    """Authentication on, a platform admin and a viewer of ``default``; nobody logged in."""
    app = create_app(portal_settings(tmp_path, migrated_database_url, auth=True))
    with TestClient(app, base_url=ORIGIN) as client:
        store = app.state.running.context.store
        service.create_user(store, ADMIN[0], ADMIN[1], platform_admin=True, actor="test")
        service.create_user(store, VIEWER[0], VIEWER[1], platform_admin=False, actor="test")
        service.set_role(store, "default", VIEWER[0], Role.VIEWER, actor="test")
        yield client
