"""The MLflow API of a project other than ``default``: its tracking URI
(``/mlflow/projects/{project}``, to which MLflow's client appends ``/api/2.0/mlflow/...``,
``/ajax-api/...`` and ``/api/2.0/mlflow-artifacts/...``) serves that project's runs, and the
permission check reads the project from that path. With authentication on, an MLflow
client's ``MLFLOW_TRACKING_TOKEN`` (sent as ``Authorization: Bearer``) is a loopml token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.auth import service
from loopml.platform import create_api_app
from loopml.settings import Settings
from tests.unit.api.conftest import MAX_BODY, MAX_UPLOAD
from tests.unit.api.test_auth import ADMIN_PASSWORD, login, make_user

CHURN = "/mlflow/projects/churn"


def _churn_run(http: TestClient, headers: dict[str, str] | None = None) -> str:
    """A run made by loopml's own API in project ``churn`` (as a codeset step makes it)."""
    if http.get("/api/v1/projects/churn", headers=headers).status_code == 404:
        made = http.post("/api/v1/projects", json={"name": "churn"}, headers=headers)
        assert made.status_code == 201, made.text
    run = http.post("/api/v1/projects/churn/runs", json={"experiment": "squarer"}, headers=headers)
    assert run.status_code == 201, run.text
    run_id: str = run.json()["id"]
    return run_id


def test_a_project_s_tracking_uri_serves_its_runs(http: TestClient) -> None:
    run_id = _churn_run(http)
    metric = {"run_id": run_id, "key": "acc", "value": 0.5, "timestamp": 1, "step": 0}
    logged = http.post(f"{CHURN}/api/2.0/mlflow/runs/log-metric", json=metric)
    assert logged.status_code == 200, logged.text
    got = http.get(f"{CHURN}/ajax-api/2.0/mlflow/runs/get", params={"run_id": run_id})
    assert got.status_code == 200, got.text
    assert got.json()["run"]["data"]["metrics"][0]["key"] == "acc"
    assert http.get(f"/api/v1/projects/churn/runs/{run_id}").json()["metrics"] == {"acc": 0.5}

    # An artifact over the JSON body limit: the per-project upload path is a raw upload too.
    big = b"x" * (MAX_BODY + 1)
    file = f"{CHURN}/api/2.0/mlflow-artifacts/artifacts/runs/{run_id}/big.bin"
    put = http.put(file, content=big, headers={"Content-Type": "application/octet-stream"})
    assert put.status_code == 200, put.text
    assert http.get(file).content == big

    # The root paths still act in the ``mlflow.project`` setting's project (``default``).
    root = http.get("/api/2.0/mlflow/runs/get", params={"run_id": run_id})
    assert root.status_code == 404
    assert "not found in project 'default'" in root.json()["message"]


def test_a_project_that_is_not_there_or_malformed_answers_in_mlflow_s_shape(
    http: TestClient,
) -> None:
    missing = http.post(
        "/mlflow/projects/nope/api/2.0/mlflow/experiments/create", json={"name": "e"}
    )
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    bad = http.post("/mlflow/projects/No_Such!/api/2.0/mlflow/experiments/search", json={})
    assert bad.status_code == 400
    assert bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    unknown = http.post(f"{CHURN}/api/2.0/mlflow/traces/search", json={})
    assert unknown.json()["error_code"] == "ENDPOINT_NOT_FOUND"


@pytest.fixture
def auth_http(tmp_path: Path, migrated_database_url: str) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        server={"max_body_bytes": MAX_BODY, "max_upload_bytes": MAX_UPLOAD},
        auth={"enabled": True},
    )
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as client:
        store = client.app.state.running.context.store  # type: ignore[attr-defined]
        service.create_user(store, "root", ADMIN_PASSWORD, platform_admin=True, actor="test")
        yield client


def test_mlflow_requests_need_a_loopml_token_when_authentication_is_on(
    auth_http: TestClient,
) -> None:
    http = auth_http
    search = "/api/2.0/mlflow/experiments/search"
    anonymous = http.post(search, json={})
    assert anonymous.status_code == 401
    assert anonymous.json()["error_code"] == "UNAUTHENTICATED"
    forged = http.post(search, json={}, headers={"authorization": "Bearer lm_abcdefgh_" + "x" * 43})
    assert forged.status_code == 401
    admin = login(http, "root", ADMIN_PASSWORD)
    accepted = http.post(search, json={}, headers=admin)
    assert accepted.status_code == 200, accepted.text
    created = http.post("/api/2.0/mlflow/experiments/create", json={"name": "e"}, headers=admin)
    assert created.status_code == 200, created.text
    assert http.post(f"{CHURN}/api/2.0/mlflow/experiments/search", json={}).status_code == 401


def test_the_permission_check_reads_the_project_from_the_tracking_uri(
    auth_http: TestClient,
) -> None:
    http = auth_http
    admin = login(http, "root", ADMIN_PASSWORD)
    run_id = _churn_run(http, admin)
    assert http.post("/api/v1/projects", json={"name": "vault"}, headers=admin).status_code == 201
    vault_run = http.post(
        "/api/v1/projects/vault/runs", json={"experiment": "secret"}, headers=admin
    ).json()["id"]
    viewer = make_user(http, admin, "vic", "churn", "viewer")
    editor = make_user(http, admin, "eve", "churn", "editor")

    get = f"{CHURN}/api/2.0/mlflow/runs/get"
    seen = http.get(get, params={"run_id": run_id}, headers=viewer)
    assert seen.status_code == 200, seen.text
    assert seen.json()["run"]["info"]["run_id"] == run_id
    param = {"run_id": run_id, "key": "alpha", "value": "0.8"}
    log = f"{CHURN}/api/2.0/mlflow/runs/log-parameter"
    refused = http.post(log, json=param, headers=viewer)
    assert refused.status_code == 403
    assert refused.json()["error_code"] == "PERMISSION_DENIED"
    assert http.post(log, json=param, headers=editor).status_code == 200

    # A project the token cannot see is not there, as for loopml's own routes; so is the
    # root paths' project (``default``), where neither user is a member.
    hidden = http.get(
        "/mlflow/projects/vault/api/2.0/mlflow/runs/get",
        params={"run_id": vault_run},
        headers=editor,
    )
    assert hidden.status_code == 404
    assert hidden.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert vault_run not in hidden.text
    root = http.get("/api/2.0/mlflow/runs/get", params={"run_id": run_id}, headers=editor)
    assert root.status_code == 404
    upload = f"/mlflow/projects/vault/api/2.0/mlflow-artifacts/artifacts/runs/{vault_run}/x.txt"
    assert http.put(upload, content=b"x", headers=editor).status_code == 404
