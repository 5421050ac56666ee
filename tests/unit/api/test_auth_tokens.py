"""API tokens through real HTTP: a mandatory expiry, finding and revoking a leaked token by its
prefix, and tokens narrowed to one experiment or one table doing their job and nothing else."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

import loopml
from loopml.auth import service
from loopml.client import Client
from loopml.core.auth import Principal
from loopml.core.clock import utcnow
from loopml.core.errors import PermissionDeniedError, ValidationError
from loopml.store.orm import ApiTokenRow

from .test_auth import ADMIN_PASSWORD, http, login, make_user

__all__ = ["http"]  # the authenticated app fixture, shared with test_auth.py

RUNS = "/api/v1/projects/default/runs"


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _token(http: TestClient, caller: dict[str, str], **body: Any) -> dict[str, Any]:
    made = http.post("/api/v1/tokens", json={"name": "t", **body}, headers=caller)
    assert made.status_code == 201, made.text
    answer: dict[str, Any] = made.json()
    return answer


def _sdk(http: TestClient, token: str) -> Client:
    # A second client on the same app, so that the SDK's default header (its token) does not
    # ride on the fixture's requests.
    return Client(http=TestClient(http.app, base_url="http://127.0.0.1"), token=token)


def test_every_token_expires_and_null_is_refused(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    made = _token(http, admin)
    assert made["expires_at"] is not None
    left = made["expires_at"]
    assert str(utcnow() + timedelta(days=29)) < left.replace("T", " ")
    assert left.replace("T", " ") <= str(utcnow() + timedelta(days=30))

    never = http.post("/api/v1/tokens", json={"name": "x", "expires_in_days": None}, headers=admin)
    assert never.status_code == 422
    message = never.json()["error"]["message"]
    assert "expires_in_days" in message
    assert "every token expires" in message
    for days in (0, 366):
        out = http.post(
            "/api/v1/tokens", json={"name": "x", "expires_in_days": days}, headers=admin
        )
        assert out.status_code == 422, days
    assert _token(http, admin, expires_in_days=365)["expires_at"] is not None

    store = http.app.state.running.context.store  # type: ignore[attr-defined]
    root = Principal(user="root", token_id=None, platform_admin=True, roles={})
    with pytest.raises(ValidationError, match="every token expires"):
        service.create_token(store, b"k" * 32, root, name="x", expires_in_days=None)  # type: ignore[arg-type]


def test_a_token_stored_without_an_expiry_keeps_working(http: TestClient) -> None:
    # Rows made before expiry was required have expires_at NULL: they stay valid until revoked.
    admin = login(http, "root", ADMIN_PASSWORD)
    old = _token(http, admin)
    store = http.app.state.running.context.store  # type: ignore[attr-defined]
    with store.session() as session:
        session.execute(
            update(ApiTokenRow).where(ApiTokenRow.id == old["id"]).values(expires_at=None)
        )
    assert http.get("/api/v1/projects", headers=_bearer(old["token"])).status_code == 200
    listed = http.get("/api/v1/tokens", headers=admin).json()["items"]
    assert [t["expires_at"] for t in listed if t["id"] == old["id"]] == [None]


def test_a_platform_admin_finds_and_revokes_anyones_token_by_prefix(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    editor = make_user(http, admin, "eddie", "default", "editor")
    leaked = _token(http, editor, name="ci", project="default", role="viewer")
    assert http.get("/api/v1/projects", headers=_bearer(leaked["token"])).status_code == 200
    prefix = leaked["prefix"]

    # Whose it is, from the prefix alone (as found in a log), in any of its written forms.
    for written in (prefix, f"lm_{prefix}"):
        found = http.get(f"/api/v1/admin/tokens/{written}", headers=admin)
        assert found.status_code == 200, found.text
        body = found.json()
        assert (body["user"], body["name"], body["project"], body["role"]) == (
            "eddie",
            "ci",
            "default",
            "viewer",
        )
        assert body["last_used_at"] is not None
        assert body["expires_at"] is not None
        assert body["revoked_at"] is None
        assert body["token"] is None  # never the secret
    assert http.get(f"/api/v1/admin/tokens/{prefix}", headers=editor).status_code == 403
    assert http.delete(f"/api/v1/admin/tokens/{prefix}", headers=editor).status_code == 403
    assert http.get("/api/v1/admin/tokens/zzzzzzzz", headers=admin).status_code == 404
    assert http.get(f"/api/v1/admin/tokens/{leaked['id']}", headers=admin).status_code == 422

    assert http.delete(f"/api/v1/admin/tokens/lm_{prefix}", headers=admin).status_code == 204
    refused = http.get("/api/v1/projects", headers=_bearer(leaked["token"]))
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]["message"]
    assert http.get(f"/api/v1/admin/tokens/{prefix}", headers=admin).json()["revoked_at"]
    # Recorded with the admin as the actor, and the token's user in the payload.
    root_token = http.get("/api/v1/auth/whoami", headers=admin).json()["token_id"]
    events = http.get("/api/v1/events", params={"type": "token.revoked"}, headers=admin)
    [event] = events.json()["items"]
    assert (event["subject"], event["actor"]) == (prefix, f"user:root/token:{root_token}")
    assert event["payload"] == {"user": "eddie", "name": "ci"}
    # Revoking again changes nothing and records nothing more.
    assert http.delete(f"/api/v1/admin/tokens/{prefix}", headers=admin).status_code == 204
    again = http.get("/api/v1/events", params={"type": "token.revoked"}, headers=admin)
    assert len(again.json()["items"]) == 1


def test_a_user_revokes_its_own_tokens_by_id_or_prefix_only(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    editor = make_user(http, admin, "eddie", "default", "editor")
    by_prefix, by_id = _token(http, editor), _token(http, editor)
    roots = _token(http, admin)
    assert (
        http.delete(f"/api/v1/tokens/lm_{by_prefix['prefix']}", headers=editor).status_code == 204
    )
    assert http.delete(f"/api/v1/tokens/{by_id['id']}", headers=editor).status_code == 204
    for gone in (by_prefix, by_id):
        assert http.get("/api/v1/projects", headers=_bearer(gone["token"])).status_code == 401
    # Another user's token is not found among the caller's, by id or by prefix.
    assert http.delete(f"/api/v1/tokens/{roots['prefix']}", headers=editor).status_code == 404
    assert http.delete(f"/api/v1/tokens/{roots['id']}", headers=editor).status_code == 404
    assert http.get("/api/v1/projects", headers=_bearer(roots["token"])).status_code == 200
    assert http.delete("/api/v1/tokens/not-a-token", headers=editor).status_code == 422


def test_a_narrowed_token_cannot_make_a_wider_one(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    narrow = _token(http, admin, project="default", resource="deployment:churn-api")
    caller = _bearer(narrow["token"])
    for wider in ({}, {"project": "default"}, {"project": "default", "resource": "table:t"}):
        out = http.post("/api/v1/tokens", json={"name": "w", **wider}, headers=caller)
        assert out.status_code in (403, 404), (wider, out.text)
    same = _token(http, caller, project="default", resource="deployment:churn-api")
    assert same["resource"] == "deployment:churn-api"


def _fitted() -> tuple[Any, Any]:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    return LogisticRegression().fit(frame, frame["a"] > 0), frame


def test_a_token_narrowed_to_an_experiment_logs_runs_there_only(
    http: TestClient, tmp_path: Path
) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    narrow = _token(http, admin, project="default", role="editor", resource="experiment:churn")
    sdk = _sdk(http, narrow["token"])
    caller = _bearer(narrow["token"])
    report = tmp_path / "report.txt"
    report.write_text("fine")
    model, frame = _fitted()

    # The whole SDK path: create (the experiment too), params, metrics, heartbeat, a file,
    # a logged model (its files and its record), end.
    with loopml.start_run("churn", client=sdk, params={"lr": 0.1}) as run:
        run.log_metric("auc", 0.9, step=1)
        run.log_artifact(report)
        run.log_model(model, sample=frame.head(5))
    mine = http.get(f"{RUNS}/{run.id}", headers=admin).json()
    assert (mine["experiment"], mine["status"], mine["params"]) == (
        "churn",
        "FINISHED",
        {"lr": "0.1"},
    )
    assert mine["metrics"]["auc"] == 0.9
    assert mine["actor"].startswith("user:root/token:" + narrow["id"])
    assert http.get(f"{RUNS}/{run.id}/models", headers=caller).json()[0]["path"] == "model"
    assert http.get(f"{RUNS}/{run.id}/artifacts/report.txt", headers=caller).text == "fine"
    assert http.get("/api/v1/projects/default/experiments/churn", headers=caller).status_code == 200

    # Another experiment: no new run there, and no touching its runs.
    with pytest.raises(PermissionDeniedError, match="narrowed to experiment:churn"):
        loopml.start_run("other", client=sdk)
    other = http.post(RUNS, json={"experiment": "other"}, headers=admin).json()["id"]
    base = f"{RUNS}/{other}"
    refused = [
        http.get(base, headers=caller),
        http.patch(base, json={"status": "FINISHED"}, headers=caller),
        http.post(f"{base}/log-batch", json={"params": {"x": "1"}}, headers=caller),
        http.post(f"{base}/heartbeat", headers=caller),
        http.put(f"{base}/artifacts/x.txt", content=b"x", headers=caller),
        http.post(f"{base}/models", json={}, headers=caller),
        http.get(f"{base}/models", headers=caller),
        http.get(f"{RUNS}/{'0' * 32}", headers=caller),  # no such run: nothing to match
        http.post(f"{RUNS}/search", json={}, headers=caller),
        http.get("/api/v1/projects/default/experiments/other", headers=caller),
        http.post("/api/v1/projects/default/experiments", json={"name": "x"}, headers=caller),
        http.get("/api/v1/projects/default/tables", headers=caller),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused), [r.text for r in refused]
    assert "narrowed to experiment:churn" in refused[0].json()["error"]["message"]
    assert http.get(base, headers=admin).json()["status"] == "RUNNING"
    assert (
        http.post(
            "/api/v1/projects/default/experiments", json={"name": "churn2"}, headers=caller
        ).status_code
        == 403
    )

    # A viewer narrowed to the experiment reads its runs and writes nothing.
    viewer = _bearer(
        _token(http, admin, project="default", role="viewer", resource="experiment:churn")["token"]
    )
    assert http.get(f"{RUNS}/{run.id}", headers=viewer).status_code == 200
    assert http.post(RUNS, json={"experiment": "churn"}, headers=viewer).status_code == 403


def test_a_token_narrowed_to_a_table_ingests_into_it_only(http: TestClient, tmp_path: Path) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    narrow = _token(http, admin, project="default", role="editor", resource="table:events")
    sdk = _sdk(http, narrow["token"])
    first = sdk.tables.append_records("default", "events", [{"id": 1, "kind": "click"}])
    assert first.rows == 1
    csv = tmp_path / "more.csv"
    csv.write_text("id,kind\n2,view\n3,click\n")
    sdk.tables.ingest_file("default", "events", csv)
    assert sdk.tables.get("default", "events").row_count == 3
    with pytest.raises(PermissionDeniedError, match="narrowed to table:events"):
        sdk.tables.append_records("default", "other", [{"id": 1}])
    with pytest.raises(PermissionDeniedError):
        sdk.tables.ingest_file("default", "other", csv)
    with pytest.raises(PermissionDeniedError):
        sdk.tables.list("default")
    assert http.get("/api/v1/projects/default/tables/other", headers=admin).status_code == 404
