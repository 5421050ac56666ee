from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml import __version__
from loopml.client import Client
from loopml.core.errors import ServiceUnavailableError
from loopml.faces.context import running_of
from loopml.platform import create_api_app
from loopml.settings import Settings


def test_health_is_ready_on_a_fresh_database(client: Client) -> None:
    report = client.health()
    assert report == {"status": "ok", "version": __version__, "checks": {"database": "ok"}}


def test_live_and_ready_endpoints(http: TestClient) -> None:
    assert http.get("/api/v1/health/live").json()["status"] == "ok"
    assert http.get("/api/v1/health/ready").status_code == 200


def test_the_first_ready_answer_opens_the_deferred_start(tmp_path: Path) -> None:
    # `loopml up` starts what health does not need once this is set (cli/_uvicorn.py).
    settings = Settings(home=tmp_path)
    app = create_api_app(settings)
    with TestClient(app, base_url="http://127.0.0.1") as http:
        answered = running_of(app).answered
        assert http.get("/api/v1/health/live").status_code == 200
        assert not answered.is_set()  # liveness says nothing of readiness
        assert http.get("/api/v1/health").status_code == 200
        assert answered.is_set()


def test_a_health_that_is_not_ready_opens_nothing(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        database={"url": "postgresql://postgres@127.0.0.1:1/nowhere", "auto_upgrade": False},
    )
    app = create_api_app(settings)
    with TestClient(app, base_url="http://127.0.0.1") as http:
        assert http.get("/api/v1/health/ready").status_code == 503
        assert not running_of(app).answered.is_set()


def test_unreachable_database_is_not_ready_but_live(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        database={"url": "postgresql://postgres@127.0.0.1:1/nowhere", "auto_upgrade": False},
    )
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as http:
        assert http.get("/api/v1/health/live").status_code == 200
        ready = http.get("/api/v1/health/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable"
        with pytest.raises(ServiceUnavailableError, match="not ready"):
            Client(http=http).health()


def test_openapi_document_lists_the_routes(http: TestClient) -> None:
    spec = http.get("/api/v1/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/api/v1/health",
        "/api/v1/projects",
        "/api/v1/projects/{name}",
        "/api/v1/events",
        "/api/v1/projects/{project}/artifacts/{key}",
    } <= paths


def test_unknown_route_and_method_get_the_error_body(http: TestClient) -> None:
    missing = http.get("/api/v1/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = http.put("/api/v1/health", json={})
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    # The methods the path takes, named (they were missing: "allowed: " and nothing after).
    assert wrong.json()["error"]["message"] == "method PUT not allowed here; allowed: GET"
    assert wrong.headers["allow"] == "GET"
    several = http.post("/api/v1/projects/default/deployments/d")
    assert several.json()["error"]["message"].endswith("allowed: DELETE, GET, PATCH")
    # The methods of the resource the path names, not of every route whose pattern matches
    # it: /transforms/lineage (GET) is not /transforms/{name} (GET, PUT, DELETE).
    lineage = http.options("/api/v1/projects/default/transforms/lineage")
    assert lineage.status_code == 405
    assert lineage.headers["allow"] == "GET"
    assert lineage.json()["error"]["message"] == "method OPTIONS not allowed here; allowed: GET"
    named = http.post("/api/v1/projects/default/transforms/t")
    assert named.headers["allow"] == "DELETE, GET, PUT"
