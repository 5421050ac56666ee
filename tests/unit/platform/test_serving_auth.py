"""A deployment's ``auth: none | token`` with authentication on: one real replica answering
through the gateway, anonymously or only with a token, as its spec says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.auth import service
from loopml.client import Client
from loopml.core.deployments import DeploymentStatus
from loopml.faces.context import AppContext
from loopml.platform import create_api_app
from loopml.settings import Settings
from tests.conftest import free_port
from tests.unit.api.conftest import MAX_BODY, MAX_UPLOAD
from tests.unit.api.test_auth import ADMIN_PASSWORD, login
from tests.unit.deploy.deploy_support import instances, package_files, register_files

DEPLOYMENTS = "/api/v1/projects/default/deployments"
BODY = {"instances": instances(2)}


@pytest.fixture
def http(tmp_path: Path, migrated_database_url: str) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        # A port of its own: replicas are told the platform's address.
        server={"max_body_bytes": MAX_BODY, "max_upload_bytes": MAX_UPLOAD, "port": free_port()},
        auth={"enabled": True},
    )
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as client:
        ctx: AppContext = client.app.state.running.context  # type: ignore[attr-defined]
        service.create_user(ctx.store, "root", ADMIN_PASSWORD, platform_admin=True, actor="test")
        register_files(ctx.store, ctx.artifacts, package_files(tmp_path / "pkg"))
        yield client


def test_auth_defaults_to_token_and_is_refused_when_unknown(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    body = {"name": "churn", "model": "cancer/1", "min_replicas": 0}
    preview = http.post(f"{DEPLOYMENTS}?dry_run=true", json=body, headers=admin)
    assert preview.status_code == 200, preview.text
    assert preview.json()["spec"]["auth"] == "token"
    wrong = http.post(DEPLOYMENTS, json={**body, "auth": "open"}, headers=admin)
    assert wrong.status_code == 422
    patch = http.patch(f"{DEPLOYMENTS}/ghost", json={"auth": "basic"}, headers=admin)
    assert patch.status_code == 422


def test_auth_none_serves_anonymous_calls_and_token_asks_for_one(http: TestClient) -> None:
    admin = login(http, "root", ADMIN_PASSWORD)
    # The SDK's client on its own transport: it would add its token to ``http``'s headers.
    sdk = Client(http=TestClient(http.app, base_url="http://127.0.0.1"), token=_token(admin))
    assert sdk.deployments.create("churn", "cancer/1", auth="none").spec.auth == "none"
    ready = sdk.deployments.wait("churn", timeout_s=60)
    assert ready.status == DeploymentStatus.READY
    assert "authorization" not in http.headers

    anonymous = http.post("/deployments/churn/predict", json=BODY)
    assert anonymous.status_code == 200, anonymous.text
    assert len(anonymous.json()["predictions"]) == 2
    assert http.get("/v2/models/churn/ready").status_code == 200
    # Open means open: a token that is not one does not turn the call away.
    junk = {"authorization": "Bearer lm_abcdefgh_" + "y" * 43}
    assert http.post("/deployments/churn/predict", json=BODY, headers=junk).status_code == 200
    # The API's own routes about it still need a token.
    assert http.get(f"{DEPLOYMENTS}/churn").status_code == 401

    # From the change on (no cache to wait for), the same deployment asks for a token.
    assert sdk.deployments.update("churn", auth="token").spec.auth == "token"
    refused = http.post("/deployments/churn/predict", json=BODY)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"
    assert http.post("/v2/models/churn/infer", json={"inputs": []}).status_code == 401
    scoped = http.post(
        "/api/v1/tokens",
        json={"name": "p", "project": "default", "role": "viewer", "resource": "deployment:churn"},
        headers=admin,
    ).json()
    only = {"authorization": f"Bearer {scoped['token']}"}
    allowed = http.post("/deployments/churn/predict", json=BODY, headers=only)
    assert allowed.status_code == 200, allowed.text
    assert len(allowed.json()["predictions"]) == 2
    sdk.deployments.delete("churn")


def _token(headers: dict[str, str]) -> str:
    return headers["authorization"].split()[1]
