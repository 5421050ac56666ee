"""Deployments over the API, through the real SDK and the in-process app: the lifecycle,
validation errors, and one deployment really served through the gateway."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.deployments import DeploymentRequest, DeploymentStatus
from loopml.core.errors import NotFoundError, ValidationError
from loopml.faces.context import AppContext
from loopml.settings import Settings
from tests.conftest import free_port
from tests.unit.deploy.deploy_support import (
    PackageFiles,
    instances,
    package_files,
    register_files,
    replica_processes,
)

DEPLOYMENTS = "/api/v1/projects/default/deployments"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The API tests' settings, on a port of their own: replicas log their predictions to
    the configured address, which must not be another loopml's."""
    server = settings.server.model_copy(update={"port": free_port()})
    return settings.model_copy(update={"server": server})


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> PackageFiles:
    return package_files(tmp_path_factory.mktemp("package") / "pkg")


@pytest.fixture
def versions(http: TestClient, package: PackageFiles) -> None:
    """Model ``cancer`` with READY versions 1 and 2."""
    ctx: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
    for _ in range(2):
        register_files(ctx.store, ctx.artifacts, package)


def test_the_lifecycle_of_a_deployment(client: Client, versions: None) -> None:
    deployments = client.deployments
    created = deployments.create("churn", "cancer/1", min_replicas=0, canary="cancer/2")
    assert created.status == DeploymentStatus.PENDING
    assert created.traffic == {1: 90, 2: 10}
    # min_replicas 0: nothing starts until a request comes.
    assert deployments.wait("churn", timeout_s=10).status == DeploymentStatus.SCALED_TO_ZERO
    assert [d.name for d in deployments.list().items] == ["churn"]

    updated = deployments.update("churn", model="cancer/2", canary=None)
    assert updated.traffic == {2: 100}
    assert [r.number for r in deployments.revisions("churn")] == [1, 2]
    scaled = deployments.scale("churn", min_replicas=0, max_replicas=3)
    assert scaled.spec.max_replicas == 3
    rolled = deployments.rollback("churn", 1)
    assert rolled.traffic == {1: 100}
    assert rolled.spec.model == "cancer/1"
    assert deployments.logs("churn") == []
    deployments.delete("churn")
    with pytest.raises(NotFoundError):
        deployments.get("churn")
    kinds = [e.type for e in client.events.list(type="deployment.*").items]
    assert kinds[0] == "deployment.created"
    assert kinds[-1] == "deployment.deleted"
    assert "deployment.rolled_back" in kinds


def test_a_dry_run_creates_nothing(client: Client, http: TestClient, versions: None) -> None:
    preview = http.post(f"{DEPLOYMENTS}?dry_run=true", json={"name": "churn", "model": "cancer"})
    assert preview.status_code == 200
    assert preview.json()["revisions"][0]["version"] == 2
    assert client.deployments.list().items == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "Churn_API", "model": "cancer/1"}, 422, "validation_error"),
        ({"name": "churn-", "model": "cancer/1"}, 422, "validation_error"),
        ({"name": "churn", "model": "Cancer@@x"}, 422, "validation_error"),
        ({"name": "churn", "model": "other:cancer/1"}, 422, "validation_error"),
        ({"name": "churn", "model": "cancer/1", "extra": 1}, 422, "validation_error"),
        ({"name": "churn", "model": "cancer/1", "min_replicas": 65}, 422, "validation_error"),
        ({"name": "churn", "model": "cancer/1", "min_replicas": 3}, 422, "validation_error"),
        ({"name": "churn", "model": "ghost/1"}, 404, "not_found"),
        ({"name": "churn", "model": "ghost/1", "min_replicas": 3}, 404, "not_found"),
        ({"name": "churn", "model": "cancer/9"}, 404, "not_found"),
        ({"name": "churn", "model": "cancer@champion"}, 404, "not_found"),
        ({"name": "churn", "model": "cancer/1", "target": "kubernetes"}, 409, "conflict"),
        (
            {"name": "churn", "model": "cancer/1", "canary": {"model": "cancer/2", "percent": 100}},
            422,
            "validation_error",
        ),
    ],
)
def test_invalid_deployments_are_refused(
    http: TestClient, versions: None, body: dict[str, object], status: int, code: str
) -> None:
    answer = http.post(DEPLOYMENTS, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code


@pytest.mark.parametrize(
    "body",
    [
        {"name": "churn", "model": "Bad Model"},
        {"name": "churn", "model": "cancer/1", "resources": {"cpu": "lots"}, "target": "mars"},
        {"name": "churn", "model": "cancer/1", "canary": {"model": "cancer/2", "percent": 100}},
        {"name": "churn", "model": "cancer/1", "features": {"views": ["a", "a"]}, "extra": 1},
    ],
)
def test_a_request_checked_before_it_is_sent_reads_as_the_apis_answer(
    http: TestClient, body: dict[str, object]
) -> None:
    """``loopml deploy`` and the client check a body with ``DeploymentRequest.parse`` before
    sending it: the user must read the same error as when the API refused it."""
    answer = http.post(DEPLOYMENTS, json=body)
    assert answer.status_code == 422, answer.text
    with pytest.raises(ValidationError) as local:
        DeploymentRequest.parse(body)
    assert local.value.to_dict() == answer.json()


def test_a_canarys_judging_fields_are_kept_and_checked(client: Client, versions: None) -> None:
    deployments = client.deployments
    policy = {"auto": True, "min_requests": 5, "promote_after_s": 30}
    created = deployments.create(
        "churn", "cancer/1", min_replicas=0, canary="cancer/2", canary_policy=policy
    )
    assert created.spec.canary is not None
    assert (created.spec.canary.auto, created.spec.canary.min_requests) == (True, 5)
    assert created.spec.canary.max_quality_drop is None  # the server's setting then
    updated = deployments.update(
        "churn", canary="cancer/2", canary_percent=20, canary_policy={"max_latency_ratio": 2}
    )
    assert updated.spec.canary is not None
    assert (updated.spec.canary.auto, updated.spec.canary.max_latency_ratio) == (None, 2)
    for wrong in ({"min_requests": 0}, {"max_error_rate_increase": 2}, {"max_latency_ratio": 0.5}):
        with pytest.raises(ValidationError):
            deployments.update("churn", canary="cancer/2", canary_policy=wrong)
    deployments.delete("churn")


def test_routes_refuse_what_does_not_exist(client: Client, http: TestClient) -> None:
    assert http.get("/api/v1/projects/nope/deployments").status_code == 404
    assert http.get(f"{DEPLOYMENTS}/ghost").status_code == 404
    assert http.post(f"{DEPLOYMENTS}/ghost/rollback", json={"revision": 1}).status_code == 404
    assert http.post(f"{DEPLOYMENTS}/ghost/scale", json={"replicas": 2}).status_code == 404
    assert http.get(f"{DEPLOYMENTS}/ghost/logs", params={"tail": 0}).status_code == 422
    assert http.get(DEPLOYMENTS, params={"cursor": "Bad Cursor"}).status_code == 422
    text = http.post(DEPLOYMENTS, content=b"name=x", headers={"content-type": "text/plain"})
    assert text.status_code == 403  # a form type: refused as cross-site (test_csrf.py)
    answer = http.post("/deployments/ghost/predict", json={"instances": []})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
    assert http.post("/v2/models/Bad_Name/infer", json={}).status_code == 404
    with pytest.raises(NotFoundError):
        client.deployments.rollback("ghost", 1)
    assert "loopml_gateway_requests_total" in http.get("/metrics").text


def test_scale_and_rollback_check_their_arguments(client: Client, versions: None) -> None:
    client.deployments.create("churn", "cancer/1", min_replicas=0)
    with pytest.raises(ValidationError, match="either replicas"):
        client.deployments.scale("churn", 2, min_replicas=1)
    with pytest.raises(ValidationError, match="min_replicas"):
        client.deployments.scale("churn", min_replicas=4)
    with pytest.raises(NotFoundError, match="no revision 5"):
        client.deployments.rollback("churn", 5)
    client.deployments.delete("churn")


def test_a_deployment_answers_through_the_gateway_and_delete_stops_it(
    client: Client, http: TestClient, versions: None
) -> None:
    client.deployments.create("churn", "cancer/2")
    ready = client.deployments.wait("churn", timeout_s=60)
    assert (ready.status, ready.replicas_ready) == (DeploymentStatus.READY, 1)
    answer = client.deployments.predict("churn", instances(3))
    assert len(answer["predictions"]) == 3
    assert answer["version"] == 2
    raw = http.post("/deployments/churn/predict", json={"instances": instances(1)})
    assert raw.headers["x-loopml-revision"] == "1"
    assert raw.headers["x-loopml-model-version"] == "2"
    log = "\n".join(client.deployments.logs("churn", tail=20))
    assert "loopml.serve: cancer version 2 (onnx) for deployment churn" in log
    assert len(replica_processes("churn")) == 1
    client.deployments.delete("churn")
    assert replica_processes("churn") == []


def test_deployment_logs_are_searched_by_text_and_level(
    client: Client, http: TestClient, settings: Settings, versions: None
) -> None:
    client.deployments.create("churn", "cancer/1", min_replicas=0)
    log = settings.home / "deployments" / "default" / "churn" / "replicas.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    written = [
        "INFO:     Started server process [4242]",
        'INFO:     127.0.0.1:5000 - "POST /predict HTTP/1.1" 200 OK',
        "ERROR:    Exception in ASGI application",
        "Traceback (most recent call last):",
        "ValueError: column 'age' is missing",
        'INFO:     127.0.0.1:5000 - "POST /predict HTTP/1.1" 500 Internal Server Error',
    ]
    with log.open("a", encoding="utf-8") as file:
        file.writelines(line + "\n" for line in written)
    deployments = client.deployments
    assert deployments.logs("churn", grep="post /PREDICT") == [written[1], written[5]]
    assert deployments.logs("churn", grep="post /predict", tail=1) == [written[5]]
    assert deployments.logs("churn", level="error") == written[2:5]
    assert deployments.logs("churn", level="error", grep="age") == [written[4]]
    assert deployments.logs("churn", level="critical") == []
    assert deployments.logs("churn", tail=2) == written[-2:]

    url = f"{DEPLOYMENTS}/churn/logs"
    too_long = http.get(url, params={"grep": "x" * 201})
    assert too_long.status_code == 422
    assert "grep" in too_long.json()["error"]["message"]
    assert "200 characters" in too_long.json()["error"]["message"]
    loud = http.get(url, params={"level": "loud"})
    assert loud.status_code == 422
    assert "not one of debug, info, warning, error, critical" in loud.json()["error"]["message"]
    assert http.get(url, params={"level": "ERROR"}).json()["lines"] == written[2:5]
    client.deployments.delete("churn")
