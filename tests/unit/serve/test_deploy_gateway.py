"""The gateway's failure paths, with a route source that holds fixed routes (the success
paths, with real replicas, are in test_deploy_local.py)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from loopml.serve.gateway.app import Gateway
from loopml.serve.gateway.config import GatewayConfig
from loopml.serve.gateway.routing import Backend, RevisionRoute, Routes


class FixedRoutes:
    """A ``RouteSource`` with one deployment, ``churn``, and whatever routes a test sets."""

    def __init__(self, routes: Routes) -> None:
        self.current = routes
        self.woken = 0
        self.touched = 0

    def routes(self, project: str, name: str) -> Routes | None:
        return self.current if (project, name) == ("default", "churn") else None

    def all_routes(self) -> list[Routes]:
        return [self.current]

    def touch(self, project: str, name: str) -> None:
        self.touched += 1

    def wake(self, project: str, name: str) -> None:
        self.woken += 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _backend(revision: int = 1) -> Backend:
    return Backend(f"http://127.0.0.1:{_closed_port()}", revision, "cancer", revision)


def _routes(*backends: Backend) -> Routes:
    revision = RevisionRoute(1, "cancer", 1, 100, tuple(backends))
    return Routes("default", "churn", (revision,))


@pytest.fixture
def source() -> FixedRoutes:
    return FixedRoutes(_routes())


@pytest.fixture
def gateway(source: FixedRoutes) -> Gateway:
    return Gateway(source, GatewayConfig(activation_timeout_s=0.3, connect_timeout_s=0.5))


@pytest.fixture
def http(gateway: Gateway) -> Iterator[TestClient]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        yield
        await gateway.close()

    app = Starlette(routes=gateway.routes(), lifespan=lifespan)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def test_no_ready_replica_wakes_the_deployment_then_answers_503(
    http: TestClient, source: FixedRoutes
) -> None:
    answer = http.post("/deployments/churn/predict", json={"instances": []})
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["error"]["code"] == "service_unavailable"
    assert "no ready replica after 0.3 s" in answer.json()["error"]["message"]
    assert (source.woken, source.touched) == (1, 1)
    metrics = http.get("/metrics").text
    assert 'loopml_gateway_activations_total{deployment="churn",project="default"} 1.0' in metrics


def test_an_unreachable_replica_is_retried_on_another_and_marked(
    http: TestClient, source: FixedRoutes
) -> None:
    first, second = _backend(), _backend()
    source.current = _routes(first, second)
    answer = http.post("/deployments/churn/predict", json={"instances": []})
    assert answer.status_code == 503
    assert "no replica could be reached" in answer.json()["error"]["message"]
    assert first.failed
    assert second.failed
    assert (first.inflight, second.inflight) == (0, 0)
    metrics = http.get("/metrics").text
    assert 'loopml_gateway_retries_total{deployment="churn",project="default"} 1.0' in metrics
    # Both marked: the next request finds no usable replica and waits for one instead.
    again = http.post("/deployments/churn/predict", json={"instances": []})
    assert "no ready replica" in again.json()["error"]["message"]


def test_unknown_names_get_404_and_no_metric_series(http: TestClient) -> None:
    for path in (
        "/deployments/ghost/predict",
        "/projects/other/deployments/churn/predict",
        "/v2/models/ghost/infer",
    ):
        answer = http.post(path, json={})
        assert answer.status_code == 404, path
        body = answer.json()
        if path.startswith("/v2/"):  # the Open Inference Protocol's body: a string message
            assert body["code"] == "not_found"
            assert "no deployment 'ghost'" in body["error"]
        else:
            assert body["error"]["code"] == "not_found"
        assert answer.headers["x-loopml-error-code"] == "not_found"
    assert http.post("/deployments/Bad_Name/predict", json={}).status_code == 404
    assert "ghost" not in http.get("/metrics").text


def test_v2_paths_check_model_version_and_method(http: TestClient, source: FixedRoutes) -> None:
    assert http.post("/v2/models/churn/versions/2/infer", json={}).status_code == 404
    assert http.post("/deployments/churn/v2/models/other/infer", json={}).status_code == 404
    assert http.post("/deployments/churn/v2/models/churn/versions/x/infer").status_code == 404
    assert http.post("/deployments/churn/v2/unknown/path", json={}).status_code == 404
    assert http.post("/deployments/churn/v2/health/ready").status_code == 405
    ready = http.get("/v2/models/churn/ready")
    assert (ready.status_code, ready.json()) == (503, {"name": "churn", "ready": False})
    assert http.get("/deployments/churn/v2/health/live").json() == {"live": True}
    assert source.woken == 0  # probes never wake it


def test_a_request_refused_before_any_model_is_counted_apart_not_as_a_deployment_error(
    http: TestClient, source: FixedRoutes
) -> None:
    for path in ("/v2/models/churn/infer", "/deployments/churn/v2/models/churn/infer"):
        answer = http.get(path)
        assert answer.status_code == 405, path
        assert answer.json() == {
            "error": "method GET is not allowed here; use POST",
            "code": "method_not_allowed",
            "details": {"allowed": "POST"},
        }
    assert http.post("/deployments/churn/v2/unknown/path", json={}).status_code == 404
    metrics = http.get("/metrics").text
    assert (
        'loopml_gateway_refused_requests_total{code="method_not_allowed",deployment="churn",'
        'project="default"} 2.0'
    ) in metrics
    assert 'code="not_found",deployment="churn",project="default"} 1.0' in metrics
    # Not a request of the deployment: no series the monitor would read as its errors.
    assert "loopml_gateway_requests_total{" not in metrics
    assert "loopml_gateway_errors_total{" not in metrics
    assert source.woken == 0


def test_the_gateways_own_errors_have_the_apis_body_and_v2_paths_the_protocols() -> None:
    """One shape for loopml's answers (``platform/errors.py``); on V2 paths the Open Inference
    Protocol's ``{"error": "<message>"}``, loopml's code and details beside it."""
    import json

    from loopml.core.errors import NotFoundError
    from loopml.platform.errors import error_response as api_error
    from loopml.serve.gateway._requests import error_response

    error = NotFoundError("no deployment 'ghost'", details={"deployment": "ghost"})
    ours = error_response("/deployments/ghost/predict", error)
    api = api_error(error.status, error.code, error.message, error.details)
    assert (
        json.loads(ours.body)
        == json.loads(api.body)
        == {
            "error": {
                "code": "not_found",
                "message": "no deployment 'ghost'",
                "details": {"deployment": "ghost"},
            }
        }
    )
    assert ours.headers["x-loopml-error-code"] == api.headers["x-loopml-error-code"]
    v2 = error_response("/v2/models/ghost/infer", error)
    assert json.loads(v2.body) == {
        "error": "no deployment 'ghost'",
        "code": "not_found",
        "details": {"deployment": "ghost"},
    }
