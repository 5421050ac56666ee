"""Requests per caller: real requests through the gateway to one real replica, with two
tokens, anonymously to an ``auth: none`` deployment, and with authentication off; the
gateway counts them and the monitor's round puts each caller's count in the window."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from loopml.auth import service
from loopml.client import Client
from loopml.faces.context import AppContext
from loopml.monitor.engine import Monitor
from loopml.platform import create_api_app
from loopml.platform.monitoring import gateway_callers
from loopml.settings import Settings
from loopml.store import monitor as rows
from tests.conftest import free_port
from tests.unit.api.conftest import MAX_BODY, MAX_UPLOAD
from tests.unit.api.test_auth import ADMIN_PASSWORD, login
from tests.unit.deploy.deploy_support import instances, package_files, register_files

BODY = {"instances": instances(1)}


@contextmanager
def platform(tmp_path: Path, migrated_database_url: str, *, auth: bool) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        server={"max_body_bytes": MAX_BODY, "max_upload_bytes": MAX_UPLOAD, "port": free_port()},
        auth={"enabled": auth},
        # This test's monitor is the only one on the database.
        monitor={"enabled": False, "lag_s": 0, "default_rules": []},
    )
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as client:
        ctx: AppContext = client.app.state.running.context  # type: ignore[attr-defined]
        service.create_user(ctx.store, "root", ADMIN_PASSWORD, platform_admin=True, actor="test")
        register_files(ctx.store, ctx.artifacts, package_files(tmp_path / "pkg"))
        yield client


def _monitor(http: TestClient) -> Monitor:
    ctx: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
    metrics = http.app.state.running.serving.gateway.metrics  # type: ignore[attr-defined]
    return Monitor(
        ctx.store, ctx.artifacts, ctx.settings.monitor, callers=lambda: gateway_callers(metrics)
    )


def _callers(http: TestClient, deployment: str) -> dict[str, int]:
    ctx: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
    with ctx.store.session() as session:
        [window] = rows.list_windows(session, "default", deployment, size="1h")
    found: dict[str, Any] = window["summary"]["usage"]["callers"]
    return found


def _token(http: TestClient, admin: dict[str, str], name: str) -> tuple[dict[str, str], str]:
    made = http.post(
        "/api/v1/tokens", json={"name": name, "project": "default", "role": "viewer"}, headers=admin
    )
    assert made.status_code == 201, made.text
    return {"authorization": f"Bearer {made.json()['token']}"}, made.json()["id"]


def test_each_token_is_counted_apart_and_open_calls_as_anonymous(
    tmp_path: Path, migrated_database_url: str
) -> None:
    with platform(tmp_path, migrated_database_url, auth=True) as http:
        admin = login(http, "root", ADMIN_PASSWORD)
        sdk = Client(http=TestClient(http.app, base_url="http://127.0.0.1"), token=_bearer(admin))
        sdk.deployments.create("churn", "cancer/1")
        sdk.deployments.create("open", "cancer/1", auth="none")
        sdk.deployments.wait("churn", timeout_s=60)
        sdk.deployments.wait("open", timeout_s=60)
        (ada, ada_id), (bob, bob_id) = _token(http, admin, "ada"), _token(http, admin, "bob")
        monitor = _monitor(http)
        monitor.tick()  # a first round, before anything is counted
        for headers, times in ((ada, 3), (bob, 2)):
            for _ in range(times):
                answer = http.post("/deployments/churn/predict", json=BODY, headers=headers)
                assert answer.status_code == 200, answer.text
        # Refused before the gateway: no caller to count.
        assert http.post("/deployments/churn/predict", json=BODY).status_code == 401
        junk = {"authorization": "Bearer lm_abcdefgh_" + "y" * 43}
        for headers in ({}, {}, junk):
            assert http.post("/deployments/open/predict", json=BODY, headers=headers).is_success
        monitor.tick()
        assert _callers(http, "churn") == {
            f"user:root/token:{ada_id}": 3,
            f"user:root/token:{bob_id}": 2,
        }
        assert _callers(http, "open") == {"anonymous": 3}
        for secret in (ada, bob):
            assert secret["authorization"].split()[1] not in str(_callers(http, "churn"))
        monitor.tick()  # nothing new: nothing counted twice
        assert sum(_callers(http, "churn").values()) == 5
        sdk.deployments.delete("churn")
        sdk.deployments.delete("open")


def test_with_authentication_off_every_request_is_anonymous(
    tmp_path: Path, migrated_database_url: str
) -> None:
    with platform(tmp_path, migrated_database_url, auth=False) as http:
        sdk = Client(http=TestClient(http.app, base_url="http://127.0.0.1"))
        sdk.deployments.create("churn", "cancer/1")
        sdk.deployments.wait("churn", timeout_s=60)
        monitor = _monitor(http)
        monitor.tick()
        someone = {"authorization": "Bearer lm_abcdefgh_" + "y" * 43}
        for headers in ({}, someone):
            assert http.post("/deployments/churn/predict", json=BODY, headers=headers).is_success
        monitor.tick()
        assert _callers(http, "churn") == {"anonymous": 2}
        sdk.deployments.delete("churn")


def _bearer(headers: dict[str, str]) -> str:
    return headers["authorization"].split()[1]
