"""The cross-site guard (issue 16): no web page can change loopml's state, on every
state-changing route, whatever origin, site or form content type it tries."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.auth import service
from loopml.platform import create_api_app
from loopml.platform.route_table import iter_api_routes
from loopml.settings import Settings

from .conftest import MAX_BODY, MAX_UPLOAD

HOSTILE: list[dict[str, str]] = [
    {"origin": "null"},
    {"origin": "http://evil.example"},
    {"origin": "https://127.0.0.1"},  # another scheme
    {"origin": "http://127.0.0.1:9999"},  # a page on another port of this machine
    {"origin": "http://localhost"},  # another host name for the same machine
    {"sec-fetch-site": "cross-site"},
    {"sec-fetch-site": "same-site"},
    {"content-type": "text/plain"},
    {"content-type": "application/x-www-form-urlencoded"},
    {"content-type": "multipart/form-data; boundary=xyz"},
    {"content-type": "Text/Plain; charset=utf-8"},
    {"origin": "null", "content-type": "text/plain"},
]
# Paths the gateway serves (not API routes): predictions change state too (the log).
GATEWAY = [
    ("POST", "/deployments/churn/predict"),
    ("POST", "/deployments/churn/feedback"),
    ("POST", "/v2/models/churn/infer"),
    ("POST", "/projects/default/deployments/churn/v2/models/churn/infer"),
]
REASONS = {"null_origin", "cross_origin", "cross_site", "form_content_type"}
_PARAM = re.compile(r"\{(\w+)(:\w+)?\}")


def _fill(path: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "project":
            return "default"
        return "0" * 32 if name.endswith("id") else "t1"

    return _PARAM.sub(value, path)


def _state_changing(http: TestClient) -> list[tuple[str, str]]:
    routes = {
        (method, _fill(path))
        for method, path, _ in iter_api_routes(http.app)  # type: ignore[arg-type]
        if method in {"POST", "PUT", "PATCH", "DELETE"}
    }
    return sorted(routes) + GATEWAY


def _events(http: TestClient) -> int:
    return len(http.get("/api/v1/events", params={"limit": 1000}).json()["items"])


def test_every_state_changing_route_refuses_every_cross_site_request(http: TestClient) -> None:
    routes = _state_changing(http)
    assert len(routes) > 60
    before = _events(http)
    for method, path in routes:
        for headers in HOSTILE:
            if method != "POST" and set(headers) == {"content-type"}:
                # Only a POST can be a browser's simple (unasked) request; see the next test.
                continue
            answer = http.request(method, path, content=b"a=1&name=x", headers=headers)
            assert answer.status_code == 403, (method, path, headers, answer.text)
            error = answer.json()["error"]
            if isinstance(error, str):  # the Open Inference Protocol's error body
                assert "CSRF" in error
            else:
                assert error["details"]["reason"] in REASONS
    assert _events(http) == before
    assert http.get("/api/v1/projects/default/tables").json()["items"] == []
    assert [p["name"] for p in http.get("/api/v1/projects").json()["items"]] == ["default"]


def test_a_form_type_is_refused_on_post_only(http: TestClient) -> None:
    """A browser sends PUT, PATCH and DELETE only after a preflight (never granted) and with
    an Origin, so a form type there is no sign of a cross-site page: MLflow's client uploads
    a .txt artifact as PUT text/plain."""
    posted = http.post(
        "/api/v1/projects", content=b'{"name": "x"}', headers={"content-type": "text/plain"}
    )
    assert posted.status_code == 403
    assert posted.json()["error"]["details"]["reason"] == "form_content_type"
    put = http.put(
        "/api/v1/projects/default/artifacts/notes.txt",
        content=b"hello",
        headers={"content-type": "text/plain"},
    )
    assert put.status_code in (200, 201), put.text


def test_the_refusal_says_why_and_how(http: TestClient) -> None:
    answer = http.post("/api/v1/projects/default/tables/t1/compact", headers={"origin": "null"})
    assert answer.status_code == 403
    assert "Origin: null" in answer.json()["error"]["message"]
    assert "allowed_origins" in answer.json()["error"]["message"]


def test_same_origin_and_non_browser_requests_pass(http: TestClient) -> None:
    same = {"origin": "http://127.0.0.1", "sec-fetch-site": "same-origin"}
    assert http.post("/api/v1/projects", json={"name": "p1"}, headers=same).status_code == 201
    assert http.post("/api/v1/projects", json={"name": "p2"}).status_code == 201
    csv = {"content-type": "text/csv"}
    upload = http.post("/api/v1/projects/default/tables/t1/files", content=b"a\n1\n", headers=csv)
    assert upload.status_code == 201, upload.text
    # Reads are left to the browser's same-origin policy (no CORS headers are ever sent).
    assert http.get("/api/v1/projects", headers={"origin": "null"}).status_code == 200


def test_a_form_type_with_an_authorization_header_is_left_to_authentication(
    http: TestClient,
) -> None:
    # No form can set Authorization; the JSON route then refuses the type itself (415).
    answer = http.post(
        "/api/v1/projects",
        content=b"name=x",
        headers={"content-type": "text/plain", "authorization": "Bearer lm_x"},
    )
    assert answer.status_code == 415


def test_a_form_type_with_a_csrf_token_header_is_left_to_authentication(
    http: TestClient,
) -> None:
    # No form can set X-CSRF-Token either (a browser session's page sends it; tested with
    # authentication on in test_sessions.py): the upload goes on to the route.
    csv = {"content-type": "text/plain", "x-csrf-token": "0" * 64}
    upload = http.post("/api/v1/projects/default/tables/t1/files", content=b"a\n1\n", headers=csv)
    assert upload.status_code == 201, upload.text
    hostile = {**csv, "origin": "http://127.0.0.1:9999"}
    refused = http.post(
        "/api/v1/projects/default/tables/t1/files", content=b"a\n2\n", headers=hostile
    )
    assert refused.status_code == 403


@pytest.fixture
def allowing(tmp_path: Path, migrated_database_url: str) -> TestClient:
    settings = Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        server={
            "max_body_bytes": MAX_BODY,
            "max_upload_bytes": MAX_UPLOAD,
            "allowed_origins": ["http://127.0.0.1:3000"],
        },
    )
    return TestClient(create_api_app(settings), base_url="http://127.0.0.1")


def test_an_allowed_origin_may_change_state(allowing: TestClient) -> None:
    with allowing as http:
        portal = {"origin": "http://127.0.0.1:3000", "sec-fetch-site": "same-site"}
        created = http.post("/api/v1/projects", json={"name": "p1"}, headers=portal)
        assert created.status_code == 201, created.text
        other = {"origin": "http://127.0.0.1:3001"}
        assert http.post("/api/v1/projects", json={"name": "p2"}, headers=other).status_code == 403


# ---------------------------------------------------------------- with authentication on

ADMIN_PASSWORD = "a long admin passphrase 1"
# An Authorization header that is not a valid token: a made-up one, another scheme.
BAD_AUTHORIZATION = ["Bearer lm_abcdefgh_" + "x" * 43, "Basic cm9vdDpwYXNzd29yZA=="]
FORM_TYPES = [h for h in HOSTILE if set(h) == {"content-type"}]


@pytest.fixture
def authed(
    tmp_path: Path, migrated_database_url: str
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app with authentication on, and a platform admin's valid token."""
    settings = Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        server={"max_body_bytes": MAX_BODY, "max_upload_bytes": MAX_UPLOAD},
        # The matrix sends hundreds of bad tokens from one address on purpose.
        auth={"enabled": True, "login_failures_per_minute": 10_000},
    )
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as http:
        store = http.app.state.running.context.store  # type: ignore[attr-defined]
        service.create_user(store, "root", ADMIN_PASSWORD, platform_admin=True, actor="test")
        login = {"user": "root", "password": ADMIN_PASSWORD}
        token = http.post("/api/v1/auth/login", json=login).json()["token"]
        yield http, {"authorization": f"Bearer {token}"}


def _written(http: TestClient, admin: dict[str, str]) -> tuple[int, list[str], list[str]]:
    events = http.get("/api/v1/events", params={"limit": 1000}, headers=admin).json()["items"]
    tables = http.get("/api/v1/projects/default/tables", headers=admin).json()["items"]
    projects = http.get("/api/v1/projects", headers=admin).json()["items"]
    return len(events), [t["name"] for t in tables], [p["name"] for p in projects]


def test_a_valid_token_does_not_make_a_cross_site_request_acceptable(
    authed: tuple[TestClient, dict[str, str]],
) -> None:
    """A browser sends a page's Origin whatever else the request carries: a token (leaked to
    the page, or a future cookie session) never makes another site's request acceptable."""
    http, admin = authed
    before = _written(http, admin)
    for method, path in _state_changing(http):
        for headers in HOSTILE:
            if headers in FORM_TYPES:
                continue  # with a valid token a form type is the token holder's call: below
            answer = http.request(method, path, content=b"a=1", headers={**headers, **admin})
            assert answer.status_code == 403, (method, path, headers, answer.text)
            error = answer.json()["error"]
            assert "CSRF" in (error if isinstance(error, str) else error["message"])
    assert _written(http, admin) == before


def test_with_auth_on_a_form_type_passes_only_with_a_valid_token(
    authed: tuple[TestClient, dict[str, str]],
) -> None:
    """No page can set Authorization without a preflight loopml never grants; with
    authentication on, the header must also hold a valid token: 401 where the route takes
    such a body (a file upload), 415 where it takes only JSON (refused before the token is
    read, by the body guard). Nothing is written either way."""
    http, admin = authed
    before = _written(http, admin)
    posts = [(method, path) for method, path in _state_changing(http) if method == "POST"]
    unauthenticated = set()
    for method, path in posts:
        for headers in FORM_TYPES:
            for authorization in BAD_AUTHORIZATION:
                sent = {**headers, "authorization": authorization}
                answer = http.request(method, path, content=b"a=1&name=x", headers=sent)
                assert answer.status_code in (401, 415), (method, path, sent, answer.text)
                if answer.status_code == 401:
                    unauthenticated.add(path)
    assert "/api/v1/projects/default/tables/t1/files" in unauthenticated
    assert _written(http, admin) == before
    # The token holder's own call goes on to the route, which judges the body itself.
    plain = {"content-type": "text/plain", **admin}
    assert http.post("/api/v1/projects", content=b"name=x", headers=plain).status_code == 415
    csv = http.post("/api/v1/projects/default/tables/t1/files", content=b"a\n1\n", headers=plain)
    assert csv.status_code == 201, csv.text
