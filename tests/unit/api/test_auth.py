"""Authentication on: users, roles, tokens and the permission check through real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from loopml.auth import service
from loopml.core.clock import utcnow
from loopml.platform import create_api_app
from loopml.settings import Settings
from loopml.store.orm import ApiTokenRow

from .conftest import MAX_BODY, MAX_UPLOAD

ADMIN_PASSWORD = "a long admin passphrase 1"
PASSWORD = "another long passphrase 2"


@pytest.fixture
def http(tmp_path: Path, migrated_database_url: str) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        server={"max_body_bytes": MAX_BODY, "max_upload_bytes": MAX_UPLOAD},
        auth={"enabled": True, "login_failures_per_minute": 5},
    )
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as client:
        store = client.app.state.running.context.store  # type: ignore[attr-defined]
        service.create_user(store, "root", ADMIN_PASSWORD, platform_admin=True, actor="test")
        yield client


def login(http: TestClient, user: str, password: str) -> dict[str, str]:
    answer = http.post("/api/v1/auth/login", json={"user": user, "password": password})
    assert answer.status_code == 201, answer.text
    return {"authorization": f"Bearer {answer.json()['token']}"}


def make_user(
    http: TestClient, admin: dict[str, str], name: str, project: str, role: str
) -> dict[str, str]:
    assert (
        http.post(
            "/api/v1/users", json={"name": name, "password": PASSWORD}, headers=admin
        ).status_code
        == 201
    )
    put = http.put(f"/api/v1/projects/{project}/members/{name}", json={"role": role}, headers=admin)
    assert put.status_code == 200, put.text
    return login(http, name, PASSWORD)


def test_no_token_is_401_health_stays_open(http: TestClient) -> None:
    assert http.get("/api/v1/health").status_code == 200
    answer = http.get("/api/v1/projects")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthenticated"
    assert "LOOPML_TOKEN" in answer.json()["error"]["message"]
    bad = http.get("/api/v1/projects", headers={"authorization": "Bearer lm_abcdefgh_" + "x" * 43})
    assert bad.status_code == 401


def test_the_token_is_shown_once_and_stored_as_prefix_and_hash(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    token = admin["authorization"].split()[1]
    listed = http.get("/api/v1/tokens", headers=admin).json()["items"]
    assert [t["prefix"] for t in listed] == [token.split("_")[1]]
    assert token not in http.get("/api/v1/tokens", headers=admin).text
    store = http.app.state.running.context.store  # type: ignore[attr-defined]
    with store.session() as session:
        stored = [r.token_hash for r in session.query(ApiTokenRow)]
    assert token not in stored[0]
    assert len(stored[0]) == 64


def test_a_new_tokens_answer_holds_every_field_the_document_requires(http: TestClient) -> None:
    # Found by the authenticated schemathesis fuzz: the answers left their null fields out.
    document = http.get("/api/v1/openapi.json").json()
    required = set(document["components"]["schemas"]["ApiToken"]["required"])
    logged_in = http.post("/api/v1/auth/login", json={"user": "root", "password": ADMIN_PASSWORD})
    bearer = {"authorization": f"Bearer {logged_in.json()['token']}"}
    made = http.post("/api/v1/tokens", json={"name": "ci"}, headers=bearer)
    for answer in (logged_in, made):
        assert answer.status_code == 201, answer.text
        assert required <= set(answer.json()), required - set(answer.json())
        assert answer.json()["token"].startswith("lm_")
        assert answer.json()["project"] is answer.json()["revoked_at"] is None


def test_roles_viewer_reads_editor_writes_admin_deletes(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    viewer = make_user(http, admin, "vera", "default", "viewer")
    editor = make_user(http, admin, "eddie", "default", "editor")
    tables = "/api/v1/projects/default/tables"
    assert http.get(tables, headers=viewer).status_code == 200
    refused = http.post(tables, json={"name": "t1"}, headers=viewer)
    assert refused.status_code == 403
    assert "editor role" in refused.json()["error"]["message"]
    assert http.post(tables, json={"name": "t1"}, headers=editor).status_code == 201
    assert http.delete(f"{tables}/t1", headers=editor).status_code == 403
    assert http.delete("/api/v1/projects/default", headers=editor).status_code == 403
    assert http.post("/api/v1/gc", headers=editor).status_code == 403
    assert http.delete(f"{tables}/t1", headers=admin).status_code == 204
    # Who did it is on the event.
    made = http.get("/api/v1/events", params={"type": "table.created"}, headers=admin).json()
    assert made["items"][0]["actor"].startswith("user:eddie/token:")


def test_a_project_the_caller_cannot_see_is_404_like_a_missing_one(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    assert http.post("/api/v1/projects", json={"name": "secret"}, headers=admin).status_code == 201
    viewer = make_user(http, admin, "vera", "default", "viewer")
    hidden = http.get("/api/v1/projects/secret/tables", headers=viewer)
    missing = http.get("/api/v1/projects/nothere/tables", headers=viewer)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["message"] == "project 'secret' not found"


def test_expired_and_revoked_tokens_are_refused(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    made = http.post("/api/v1/tokens", json={"name": "ci"}, headers=admin).json()
    ci = {"authorization": f"Bearer {made['token']}"}
    assert http.get("/api/v1/projects", headers=ci).status_code == 200
    assert http.delete(f"/api/v1/tokens/{made['id']}", headers=admin).status_code == 204
    revoked = http.get("/api/v1/projects", headers=ci)
    assert revoked.status_code == 401
    assert "revoked" in revoked.json()["error"]["message"]

    other = http.post("/api/v1/tokens", json={"name": "old"}, headers=admin).json()
    store = http.app.state.running.context.store  # type: ignore[attr-defined]
    with store.session() as session:
        session.execute(
            update(ApiTokenRow)
            .where(ApiTokenRow.id == other["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    expired = http.get("/api/v1/projects", headers={"authorization": f"Bearer {other['token']}"})
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]["message"]


def test_a_token_is_never_stronger_than_its_creator(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    editor = make_user(http, admin, "eddie", "default", "editor")
    too_high = http.post(
        "/api/v1/tokens", json={"name": "x", "project": "default", "role": "admin"}, headers=editor
    )
    assert too_high.status_code == 403
    viewer_token = http.post(
        "/api/v1/tokens",
        json={"name": "ro", "project": "default", "role": "viewer"},
        headers=editor,
    ).json()
    ro = {"authorization": f"Bearer {viewer_token['token']}"}
    assert (
        http.post("/api/v1/projects/default/tables", json={"name": "t1"}, headers=ro).status_code
        == 403
    )


def test_a_token_narrowed_to_one_deployment_reaches_nothing_else(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    made = http.post(
        "/api/v1/tokens",
        json={
            "name": "d",
            "project": "default",
            "role": "editor",
            "resource": "deployment:churn-api",
        },
        headers=admin,
    ).json()
    narrow = {"authorization": f"Bearer {made['token']}"}
    base = "/api/v1/projects/default/deployments"
    # Its own deployment passes the check (404: it is not deployed in this test).
    assert http.get(f"{base}/churn-api/logs", headers=narrow).status_code == 404
    assert http.get(f"{base}/other-api/logs", headers=narrow).status_code == 403
    fb = http.post(
        f"{base}/other-api/feedback", json={"inference_id": "a", "label": 1}, headers=narrow
    )
    assert fb.status_code == 403
    assert http.get("/api/v1/projects/default/tables", headers=narrow).status_code == 403


def test_failed_logins_are_rate_limited(http: TestClient) -> None:
    for _ in range(5):
        wrong = http.post("/api/v1/auth/login", json={"user": "root", "password": "nope nope nope"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["message"] == "wrong user name or password"
    limited = http.post("/api/v1/auth/login", json={"user": "root", "password": ADMIN_PASSWORD})
    assert limited.status_code == 429
    assert limited.json()["error"]["details"]["retry_after_s"] >= 1


def test_weak_passwords_are_refused(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    for password in ["short", "password1234", "eddie-eddie-eddie"]:
        answer = http.post(
            "/api/v1/users", json={"name": "eddie", "password": password}, headers=admin
        )
        assert answer.status_code == 422, password


def test_a_user_lists_only_the_projects_it_has_a_role_in(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    assert http.post("/api/v1/projects", json={"name": "secret"}, headers=admin).status_code == 201
    viewer = make_user(http, admin, "vera", "default", "viewer")
    names = [p["name"] for p in http.get("/api/v1/projects", headers=viewer).json()["items"]]
    assert names == ["default"]
    everything = http.get("/api/v1/projects", headers=admin).json()["items"]
    assert [p["name"] for p in everything] == ["default", "secret"]


def test_serving_paths_need_a_token_for_the_deployment(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    body = {"instances": [{"x": 1}]}
    anonymous = http.post("/deployments/churn-api/predict", json=body)
    assert anonymous.status_code == 401
    v2 = http.post("/v2/models/churn-api/infer", json={"inputs": []})
    assert v2.status_code == 401
    assert "error" in v2.json()  # the Open Inference Protocol's error body
    viewer = make_user(http, admin, "vera", "default", "viewer")
    # Let through: 404 because nothing is deployed in this test.
    assert http.post("/deployments/churn-api/predict", json=body, headers=viewer).status_code == 404
    narrow = http.post(
        "/api/v1/tokens",
        json={
            "name": "p",
            "project": "default",
            "role": "viewer",
            "resource": "deployment:churn-api",
        },
        headers=admin,
    ).json()
    only = {"authorization": f"Bearer {narrow['token']}"}
    assert http.post("/deployments/churn-api/predict", json=body, headers=only).status_code == 404
    assert http.post("/deployments/other-api/predict", json=body, headers=only).status_code == 403
    assert (
        http.post("/v2/models/other-api/infer", json={"inputs": []}, headers=only).status_code
        == 403
    )
    assert (
        http.post(
            "/projects/secret/deployments/churn-api/predict", json=body, headers=viewer
        ).status_code
        == 404
    )


def test_events_record_and_filter_by_actor(http: TestClient) -> None:
    from loopml.client import Client

    admin = login(http, "root", ADMIN_PASSWORD)
    editor = make_user(http, admin, "eddie", "default", "editor")
    assert (
        http.post(
            "/api/v1/projects/default/tables", json={"name": "t1"}, headers=editor
        ).status_code
        == 201
    )
    assert (
        http.post("/api/v1/projects/default/tables", json={"name": "t2"}, headers=admin).status_code
        == 201
    )
    sdk = Client(http=http, token=admin["authorization"].split()[1])
    by_eddie = [e.subject for e in sdk.events.iter(type="table.created", actor="user:eddie")]
    assert by_eddie == ["t1"]
    everyone = [e.actor.split("/")[0] for e in sdk.events.iter(type="table.created")]
    assert everyone == ["user:eddie", "user:root"]
    assert list(sdk.events.iter(actor="user:ed")) == []  # a prefix of a name is not the name


def test_artifact_changes_and_gc_are_recorded_with_their_actor(http: TestClient) -> None:
    import hashlib

    admin = login(http, "root", ADMIN_PASSWORD)
    editor = make_user(http, admin, "eddie", "default", "editor")
    root_actor = (
        "user:root/token:" + http.get("/api/v1/auth/whoami", headers=admin).json()["token_id"]
    )
    eddie_actor = (
        "user:eddie/token:" + http.get("/api/v1/auth/whoami", headers=editor).json()["token_id"]
    )
    key = "/api/v1/projects/default/artifacts/reports/eval.json"
    assert http.put(key, content=b"{}", headers=editor).status_code == 201
    assert http.delete(key, headers=admin).status_code == 204
    assert http.post("/api/v1/gc", params={"dry_run": "true"}, headers=admin).status_code == 200
    assert http.post("/api/v1/gc", headers=admin).status_code == 200
    feed = http.get("/api/v1/events", params={"limit": 1000}, headers=admin).json()["items"]
    audited = [e for e in feed if e["type"].split(".")[0] in ("artifact", "gc")]
    # A dry run changes nothing and leaves no event; the real one names what it freed.
    assert [(e["type"], e["subject"], e["project"], e["actor"]) for e in audited] == [
        ("artifact.uploaded", "reports/eval.json", "default", eddie_actor),
        ("artifact.deleted", "reports/eval.json", "default", root_actor),
        ("gc.ran", "artifacts", None, root_actor),
    ]
    assert audited[0]["payload"] == {
        "key": "reports/eval.json",
        "size": 2,
        "sha256": hashlib.sha256(b"{}").hexdigest(),
    }
    assert set(audited[2]["payload"]) == {"objects", "bytes", "prefixes", "temporary_removed"}


def test_failed_token_checks_are_rate_limited_too(http: TestClient) -> None:
    bad = {"authorization": "Bearer lm_abcdefgh_" + "y" * 43}
    for _ in range(5):
        assert http.get("/api/v1/projects", headers=bad).status_code == 401
    assert http.get("/api/v1/projects", headers=bad).status_code == 429
    # Health stays open whatever the count.
    assert http.get("/api/v1/health").status_code == 200
