"""Browser sessions (issue 16): the session cookie's attributes, the CSRF token every state
change made with it needs, logout, and the failure limit, through real HTTP with
authentication on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.auth import service
from loopml.core.clock import utcnow
from loopml.platform import create_api_app
from loopml.settings import Settings

from .conftest import MAX_BODY, MAX_UPLOAD

ADMIN_PASSWORD = "a long admin passphrase 1"
SESSION = "/api/v1/auth/session"
TABLES = "/api/v1/projects/default/tables"
CREDENTIALS = {"user": "root", "password": ADMIN_PASSWORD}


def _settings(tmp_path: Path, migrated_database_url: str, *, enabled: bool = True) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        server={"max_body_bytes": MAX_BODY, "max_upload_bytes": MAX_UPLOAD},
        auth={"enabled": enabled, "login_failures_per_minute": 5, "session_hours": 8},
    )


def _client(settings: Settings, base_url: str) -> Iterator[TestClient]:
    with TestClient(create_api_app(settings), base_url=base_url) as client:
        store = client.app.state.running.context.store  # type: ignore[attr-defined]
        service.create_user(store, "root", ADMIN_PASSWORD, platform_admin=True, actor="test")
        yield client


@pytest.fixture
def http(tmp_path: Path, migrated_database_url: str) -> Iterator[TestClient]:
    """Authentication on, over plain http; the client keeps cookies as a browser does."""
    yield from _client(_settings(tmp_path, migrated_database_url), "http://127.0.0.1")


@pytest.fixture
def https(tmp_path: Path, migrated_database_url: str) -> Iterator[TestClient]:
    """The same, with requests arriving over https (the scope's scheme)."""
    yield from _client(_settings(tmp_path, migrated_database_url), "https://127.0.0.1")


def _cookies(answer: object) -> dict[str, set[str]]:
    """Each Set-Cookie of an answer: its name, and its attributes in lower case."""
    found = {}
    for header in answer.headers.get_list("set-cookie"):  # type: ignore[attr-defined]
        name_value, *attributes = (part.strip() for part in header.split(";"))
        found[name_value.split("=", 1)[0]] = {a.lower() for a in attributes}
    return found


def _start(http: TestClient) -> str:
    answer = http.post(SESSION, json=CREDENTIALS)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["csrf_token"])


def test_the_session_cookie_is_httponly_lax_and_not_secure_over_http(http: TestClient) -> None:
    plain = http.post(SESSION, json=CREDENTIALS)
    assert plain.status_code == 201, plain.text
    cookies = _cookies(plain)
    assert set(cookies) == {"loopml_session", "loopml_csrf"}
    session, csrf = cookies["loopml_session"], cookies["loopml_csrf"]
    assert {"httponly", "samesite=lax", "path=/", "max-age=28800"} <= session
    assert "secure" not in session
    # The CSRF cookie is for the page's scripts to read: not HttpOnly, but as Lax.
    assert "httponly" not in csrf
    assert {"samesite=lax", "path=/", "max-age=28800"} <= csrf
    # The session token is in the HttpOnly cookie only; the body carries the CSRF token.
    body = plain.json()
    assert body["csrf_token"] == http.cookies["loopml_csrf"]
    assert "lm_" not in plain.text
    assert http.cookies["loopml_session"].startswith("lm_")
    listed = http.get("/api/v1/tokens").json()["items"]
    assert [(t["id"], t["name"]) for t in listed] == [(body["token_id"], "session")]
    # The token and its cookie expire together, after auth.session_hours.
    expires = datetime.fromisoformat(body["expires_at"])
    assert abs(expires - (utcnow() + timedelta(hours=8))) < timedelta(minutes=1)
    assert listed[0]["expires_at"] == body["expires_at"]


def test_over_https_both_cookies_are_secure(https: TestClient) -> None:
    cookies = _cookies(https.post(SESSION, json=CREDENTIALS))
    assert {"secure", "httponly", "samesite=lax"} <= cookies["loopml_session"]
    assert {"secure", "samesite=lax"} <= cookies["loopml_csrf"]
    assert https.get("/api/v1/auth/whoami").json()["user"] == "root"


def test_a_cookie_reads_and_each_state_change_needs_the_csrf_token(http: TestClient) -> None:
    assert http.get(TABLES).status_code == 401
    csrf = _start(http)
    # Reads need no CSRF token: the browser's same-origin policy keeps answers from others.
    me = http.get("/api/v1/auth/whoami")
    assert me.status_code == 200, me.text
    assert me.json()["user"] == "root"
    assert http.get(TABLES).json()["items"] == []
    # The readable loopml_csrf cookie rides along on every request: alone it proves nothing.
    missing = http.post(TABLES, json={"name": "t1"})
    assert missing.status_code == 403
    error = missing.json()["error"]
    assert (error["code"], error["details"]["reason"]) == ("permission_denied", "csrf_token")
    assert "no X-CSRF-Token header" in error["message"]
    wrong = http.post(TABLES, json={"name": "t1"}, headers={"x-csrf-token": "0" * 64})
    assert wrong.status_code == 403
    assert "a wrong X-CSRF-Token" in wrong.json()["error"]["message"]
    odd = http.post(
        TABLES, json={"name": "t1"}, headers={"x-csrf-token": "é".encode("latin-1") * 64}
    )
    assert odd.status_code == 403
    assert http.get(TABLES).json()["items"] == []
    right = http.post(TABLES, json={"name": "t1"}, headers={"x-csrf-token": csrf})
    assert right.status_code == 201, right.text
    assert http.delete(f"{TABLES}/t1").status_code == 403
    assert http.delete(f"{TABLES}/t1", headers={"x-csrf-token": csrf}).status_code == 204


def test_each_session_has_its_own_csrf_token(http: TestClient) -> None:
    first = _start(http)
    second = _start(http)  # the jar now holds the second session's cookie
    assert first != second
    assert (
        http.post(TABLES, json={"name": "t1"}, headers={"x-csrf-token": first}).status_code == 403
    )
    assert (
        http.post(TABLES, json={"name": "t1"}, headers={"x-csrf-token": second}).status_code == 201
    )


def test_an_authorization_header_decides_over_the_cookie(http: TestClient) -> None:
    _start(http)
    token = http.post("/api/v1/auth/login", json=CREDENTIALS).json()["token"]
    bearer = {"authorization": f"Bearer {token}"}
    # A bearer token needs no CSRF token (no page can make a browser send one elsewhere).
    assert http.post(TABLES, json={"name": "t1"}, headers=bearer).status_code == 201
    # A header that is not a valid token is refused, never rescued by the cookie.
    basic = http.get(TABLES, headers={"authorization": "Basic cm9vdDpwYXNzd29yZA=="})
    assert basic.status_code == 401


def test_a_cookie_form_post_is_refused_and_a_page_upload_with_its_token_lands(
    http: TestClient,
) -> None:
    """The cross-site guard refuses a form type with neither Authorization nor X-CSRF-Token
    (what a form posted with the cookie looks like); with X-CSRF-Token, which only a page on
    loopml's origin can set, the token itself is then checked."""
    csrf = _start(http)
    files = f"{TABLES}/t1/files?format=csv"
    plain = {"content-type": "text/plain"}
    form = http.post(files, content=b"a\n1\n", headers=plain)
    assert form.status_code == 403
    assert form.json()["error"]["details"]["reason"] == "form_content_type"
    forged = http.post(files, content=b"a\n1\n", headers={**plain, "x-csrf-token": "f" * 64})
    assert forged.status_code == 403
    assert forged.json()["error"]["details"]["reason"] == "csrf_token"
    assert http.get(TABLES).json()["items"] == []
    own = http.post(files, content=b"a\n1\n", headers={**plain, "x-csrf-token": csrf})
    assert own.status_code == 201, own.text


def test_logout_needs_the_csrf_token_revokes_the_session_and_clears_the_cookies(
    http: TestClient,
) -> None:
    csrf = _start(http)
    token = http.cookies["loopml_session"]
    assert http.delete(SESSION).status_code == 403
    assert http.get("/api/v1/auth/whoami").status_code == 200
    out = http.delete(SESSION, headers={"x-csrf-token": csrf})
    assert out.status_code == 204, out.text
    cleared = _cookies(out)
    assert set(cleared) == {"loopml_session", "loopml_csrf"}
    assert all("max-age=0" in attributes for attributes in cleared.values())
    assert "loopml_session" not in http.cookies
    # A copy of the cookie kept from before is refused from now on.
    http.cookies.set("loopml_session", token, domain="127.0.0.1")
    refused = http.get("/api/v1/auth/whoami")
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]["message"]
    login = http.post("/api/v1/auth/login", json=CREDENTIALS).json()
    listed = http.get("/api/v1/tokens", headers={"authorization": f"Bearer {login['token']}"})
    sessions = [t for t in listed.json()["items"] if t["name"] == "session"]
    assert len(sessions) == 1
    assert sessions[0]["revoked_at"] is not None


def test_logout_with_a_bearer_token_revokes_nothing(http: TestClient) -> None:
    token = http.post("/api/v1/auth/login", json=CREDENTIALS).json()["token"]
    bearer = {"authorization": f"Bearer {token}"}
    assert http.delete(SESSION, headers=bearer).status_code == 204
    assert http.get("/api/v1/auth/whoami", headers=bearer).status_code == 200


def test_failed_session_logins_are_rate_limited_with_logins(http: TestClient) -> None:
    wrong = {"user": "root", "password": "nope nope nope"}
    for _ in range(3):
        refused = http.post(SESSION, json=wrong)
        assert refused.status_code == 401
        assert refused.json()["error"]["message"] == "wrong user name or password"
        assert "set-cookie" not in refused.headers
    for _ in range(2):  # one counter for both ways of logging in
        assert http.post("/api/v1/auth/login", json=wrong).status_code == 401
    limited = http.post(SESSION, json=CREDENTIALS)
    assert limited.status_code == 429
    assert limited.json()["error"]["details"]["retry_after_s"] >= 1
    assert "set-cookie" not in limited.headers


def test_with_authentication_off_there_is_no_session(
    tmp_path: Path, migrated_database_url: str
) -> None:
    settings = _settings(tmp_path, migrated_database_url, enabled=False)
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as http:
        answer = http.post(SESSION, json=CREDENTIALS)
        assert answer.status_code == 422
        assert "auth.enabled" in answer.json()["error"]["message"]
        assert "set-cookie" not in answer.headers
