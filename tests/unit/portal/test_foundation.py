"""The portal's frame: pages with and without authentication, the login form and its CSRF
field, the cross-site guard on its forms, errors as pages, and the API reference served
without a CDN."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.platform import create_app

from .conftest import ADMIN, ORIGIN, VIEWER, csrf_of, log_in, portal_settings


def test_with_authentication_off_the_overview_answers_and_shows_the_default_project(
    anonymous: TestClient,
) -> None:
    page = anonymous.get("/")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Overview</h1>" in page.text
    assert "No deployment yet" in page.text
    assert anonymous.get("/login", follow_redirects=False).headers["location"] == "/"


def test_with_authentication_on_a_page_sends_a_visitor_to_the_login_form_and_back(
    secured: TestClient,
) -> None:
    answer = secured.get("/?x=1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2F%3Fx%3D1"
    log_in(secured, ADMIN)
    page = secured.get("/")
    assert page.status_code == 200
    assert ADMIN[0] in page.text
    assert "Log out" in page.text


def test_a_wrong_password_shows_the_form_again_with_the_reason(secured: TestClient) -> None:
    token = csrf_of(secured.get("/login").text)
    answer = secured.post(
        "/portal/login",
        data={"user": ADMIN[0], "password": "wrong", "csrf_token": token},
        headers={"Origin": ORIGIN},
    )
    assert answer.status_code == 401
    assert "wrong user name or password" in answer.text
    assert "loopml_session" not in answer.headers.get("set-cookie", "")


def test_a_form_without_its_csrf_token_or_from_another_origin_is_refused(
    secured: TestClient,
) -> None:
    credentials = {"user": ADMIN[0], "password": ADMIN[1]}
    missing = secured.post("/portal/login", data=credentials, headers={"Origin": ORIGIN})
    assert missing.status_code == 403
    assert "CSRF" in missing.text
    token = csrf_of(secured.get("/login").text)
    elsewhere = secured.post(
        "/portal/login",
        data={**credentials, "csrf_token": token},
        headers={"Origin": "http://evil.example"},
    )
    assert elsewhere.status_code == 403
    no_origin = secured.post("/portal/login", data={**credentials, "csrf_token": token})
    assert no_origin.status_code == 403  # a form body needs this server's Origin


def test_login_never_sends_the_browser_to_another_site(secured: TestClient) -> None:
    token = csrf_of(secured.get("/login").text)
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        answer = secured.post(
            "/portal/login",
            data={"user": ADMIN[0], "password": ADMIN[1], "csrf_token": token, "next": target},
            headers={"Origin": ORIGIN},
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/", target


def test_logout_revokes_the_session(secured: TestClient) -> None:
    log_in(secured, VIEWER)
    token = csrf_of(secured.get("/").text)
    cookie = secured.cookies.get("loopml_session")
    answer = secured.post(
        "/portal/logout",
        data={"csrf_token": token},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    secured.cookies.set("loopml_session", cookie)  # a copy kept elsewhere no longer works
    assert secured.get("/", follow_redirects=False).status_code == 303


def test_the_api_reference_and_every_script_are_served_by_loopml_itself(
    anonymous: TestClient,
) -> None:
    page = anonymous.get("/docs")
    assert page.status_code == 200
    pages = page.text + anonymous.get("/docs/try").text + anonymous.get("/").text
    sources = re.findall(r'(?:src|href)="([^"]+)"', pages)
    assert sources
    for source in sources:
        if source.startswith("#"):
            continue  # a link within the page (the skip link)
        assert source.startswith("/"), f"{source} is not served by loopml"
    for source in {s for s in sources if s.startswith("/static/")}:
        assert anonymous.get(source).status_code == 200, source
    assert anonymous.get("/static/vendor/htmx.min.js").status_code == 200
    assert anonymous.get("/static/vendor/uPlot.iife.min.js").status_code == 200


def test_the_api_reference_is_swagger_ui_5_which_reads_openapi_3_1(
    anonymous: TestClient,
) -> None:
    # Swagger UI 4 answered "does not specify a valid version field" to FastAPI's 3.1.
    assert anonymous.get("/api/v1/openapi.json").json()["openapi"].startswith("3.1")
    page = anonymous.get("/docs/try").text
    assert '<script src="/static/vendor/swagger-ui-bundle.js"' in page
    assert "<script>" not in page  # no inline script: a strict CSP holds
    made = json.loads((PORTAL / "static" / "vendor" / "vendored.json").read_text())
    bundle = made["swagger-ui-bundle.js"]
    assert bundle["package"] == "swagger-ui-dist"
    assert int(bundle["version"].split(".")[0]) >= 5, bundle
    assert anonymous.get("/static/docs.js").status_code == 200


def test_an_error_is_a_page_with_the_api_status_and_message(anonymous: TestClient) -> None:
    answer = anonymous.get("/projects/nowhere/deployments/nothing")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "not found" in answer.text


def test_the_portal_answers_for_none_of_the_apis_or_the_gateways_paths(
    anonymous: TestClient,
) -> None:
    # GET on a path the API or the gateway serves with POST only is their 405, not a page
    # (the contract fuzz sends exactly these).
    for path in (
        "/deployments/a/feedback",
        "/deployments/a/predict",
        "/projects/default/deployments/a/predict",
    ):
        answer = anonymous.get(path)
        assert answer.status_code == 405, path
        assert not answer.headers["content-type"].startswith("text/html"), path


def test_the_overview_and_runs_pages_read_beside_a_writer_on_sqlite(
    tmp_path: Path, migrated_database_url: str
) -> None:
    """Their reads begin deferred (``MetadataStore.reading``): while another connection
    holds SQLite's write lock they answer, not after it commits (or busy_timeout).

    The lock is held until every page has answered, so a read that waited for it would
    fail after busy_timeout: a 200 while the writer is still in its transaction is the
    proof, whatever time a loaded machine takes to render (a 2 s bound failed once in CI at
    2.4 s with the lock never waited for)."""
    settings = portal_settings(tmp_path, migrated_database_url, auth=False)
    if not settings.database.url.startswith("sqlite"):
        pytest.skip("PostgreSQL's readers never wait on writers")
    settings.database.busy_timeout_ms = 60_000
    with TestClient(create_app(settings), base_url=ORIGIN) as anonymous:
        store = anonymous.app.state.running.context.store  # type: ignore[attr-defined]
        for path in ("/", "/runs"):  # the first render's imports and template compiling
            assert anonymous.get(path).status_code == 200
        writer = sqlite3.connect(store.url.removeprefix("sqlite:///"), isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        try:
            for path in ("/", "/runs"):
                answer = anonymous.get(path)
                # Answered while the writer still held the lock: a read that waited for it
                # would have failed after busy_timeout, the lock being held throughout.
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
                assert writer.in_transaction, path
        finally:
            writer.execute("COMMIT")
            writer.close()


PORTAL = Path(__file__).resolve().parents[3] / "src" / "loopml" / "portal"


def test_every_vendored_file_is_tied_to_the_lock_file() -> None:
    # `make assets` (assets/vendor.sh) writes vendored.json right after `npm ci` checked each
    # package's tarball against the lock: a file edited by hand, a package bumped in the lock
    # without re-vendoring, or a file added to static/vendor without going through it fails.
    vendor = PORTAL / "static" / "vendor"
    lock = json.loads((PORTAL / "assets" / "package-lock.json").read_text())
    wanted = json.loads((PORTAL / "assets" / "package.json").read_text())["dependencies"]
    made = json.loads((vendor / "vendored.json").read_text())
    assert set(made) == {p.name for p in vendor.iterdir()} - {"vendored.json"}
    assert {e["package"] for e in made.values()} == set(wanted)
    for name, entry in made.items():
        locked = lock["packages"][f"node_modules/{entry['package']}"]
        assert locked["version"] == wanted[entry["package"]], name  # pinned, not a range
        assert locked["integrity"].startswith("sha512-"), name
        assert (entry["version"], entry["integrity"]) == (locked["version"], locked["integrity"])
        digest = hashlib.sha512((vendor / name).read_bytes()).digest()
        assert entry["sha512"] == "sha512-" + base64.b64encode(digest).decode(), name
