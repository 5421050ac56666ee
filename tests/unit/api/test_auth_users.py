"""Disabling users and removing members through the API: tokens and sessions revoked at once,
logins refused with the reason, the self and last-admin guards, and the permission rules."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from loopml.auth import service
from loopml.core.errors import ConflictError

from .test_auth import ADMIN_PASSWORD, PASSWORD, http, login, make_user

__all__ = ["http"]  # the fixture, shared with test_auth


def test_a_disabled_user_loses_its_tokens_and_sessions_and_cannot_log_in(
    http: TestClient,
) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    eddie = make_user(http, admin, "eddie", "default", "editor")
    session = http.post("/api/v1/auth/session", json={"user": "eddie", "password": PASSWORD})
    assert session.status_code == 201, session.text
    cookie = http.cookies.get("loopml_session")
    assert cookie
    http.cookies.clear()
    browser = {"authorization": f"Bearer {cookie}"}
    assert http.get("/api/v1/auth/whoami", headers=browser).status_code == 200

    # Only a platform admin may disable, and not itself.
    refused = http.patch("/api/v1/users/root", json={"disabled": True}, headers=eddie)
    assert refused.status_code == 403
    itself = http.patch("/api/v1/users/root", json={"disabled": True}, headers=admin)
    assert itself.status_code == 409
    assert "cannot disable yourself" in itself.json()["error"]["message"]

    done = http.patch("/api/v1/users/eddie", json={"disabled": True}, headers=admin)
    assert done.status_code == 200, done.text
    assert done.json()["disabled"] is True
    for headers in (eddie, browser):
        gone = http.get("/api/v1/auth/whoami", headers=headers)
        assert gone.status_code == 401
        assert "revoked" in gone.json()["error"]["message"]
    again = http.post("/api/v1/auth/login", json={"user": "eddie", "password": PASSWORD})
    assert again.status_code == 401
    assert "eddie' is disabled" in again.json()["error"]["message"]
    wrong = http.post("/api/v1/auth/login", json={"user": "eddie", "password": "x" * 20})
    assert wrong.json()["error"]["message"] == "wrong user name or password"
    listed = http.get("/api/v1/users", headers=admin).json()["items"]
    assert {u["name"]: u["disabled"] for u in listed}["eddie"] is True

    enabled = http.patch("/api/v1/users/eddie", json={"disabled": False}, headers=admin)
    assert enabled.json()["disabled"] is False
    fresh = login(http, "eddie", PASSWORD)
    assert http.get("/api/v1/auth/whoami", headers=fresh).status_code == 200
    assert http.get("/api/v1/auth/whoami", headers=eddie).status_code == 401  # still revoked


def test_the_last_platform_admin_cannot_be_disabled(http: TestClient) -> None:
    store = http.app.state.running.context.store  # type: ignore[attr-defined]
    with pytest.raises(ConflictError, match="last platform admin"):
        service.disable_user(store, "root", caller=None, actor="test")
    admin = login(http, "root", ADMIN_PASSWORD)
    made = http.post(
        "/api/v1/users",
        json={"name": "ada", "password": PASSWORD, "platform_admin": True},
        headers=admin,
    )
    assert made.status_code == 201
    ada = login(http, "ada", PASSWORD)
    assert http.patch("/api/v1/users/root", json={"disabled": True}, headers=ada).status_code == 200
    with pytest.raises(ConflictError, match="last platform admin"):
        service.disable_user(store, "ada", caller=None, actor="test")
    missing = http.patch("/api/v1/users/nobody", json={"disabled": True}, headers=ada)
    assert missing.status_code == 404


def test_removing_a_member_takes_its_role_in_the_project_away(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    eddie = make_user(http, admin, "eddie", "default", "editor")
    vera = make_user(http, admin, "vera", "default", "viewer")
    assert http.get("/api/v1/projects/default/experiments", headers=eddie).status_code == 200
    refused = http.delete("/api/v1/projects/default/members/vera", headers=eddie)
    assert refused.status_code == 403  # an editor is no project admin
    gone = http.delete("/api/v1/projects/default/members/eddie", headers=admin)
    assert gone.status_code == 204, gone.text
    members = http.get("/api/v1/projects/default/members", headers=admin).json()["items"]
    assert [m["user"] for m in members] == ["vera"]
    assert http.get("/api/v1/projects/default/experiments", headers=eddie).status_code == 404
    assert http.get("/api/v1/auth/whoami", headers=eddie).json()["roles"] == {}
    twice = http.delete("/api/v1/projects/default/members/eddie", headers=admin)
    assert twice.status_code == 404
    assert "no member" in twice.json()["error"]["message"]
    assert http.get("/api/v1/projects/default/experiments", headers=vera).status_code == 200
