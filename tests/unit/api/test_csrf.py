"""The cross-site guard (issue 16): no web page can change loopml's state, on every
state-changing route, whatever origin, site or form content type it tries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.api import create_app
from loopml.api.route_table import iter_api_routes
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


@pytest.fixture
def allowing(tmp_path: Path, database_url: str) -> TestClient:
    settings = Settings(
        home=tmp_path / "home",
        database={"url": database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        server={
            "max_body_bytes": MAX_BODY,
            "max_upload_bytes": MAX_UPLOAD,
            "allowed_origins": ["http://127.0.0.1:3000"],
        },
    )
    return TestClient(create_app(settings), base_url="http://127.0.0.1")


def test_an_allowed_origin_may_change_state(allowing: TestClient) -> None:
    with allowing as http:
        portal = {"origin": "http://127.0.0.1:3000", "sec-fetch-site": "same-site"}
        created = http.post("/api/v1/projects", json={"name": "p1"}, headers=portal)
        assert created.status_code == 201, created.text
        other = {"origin": "http://127.0.0.1:3001"}
        assert http.post("/api/v1/projects", json={"name": "p2"}, headers=other).status_code == 403
