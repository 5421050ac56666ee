"""The request guard: body limits, media types, Host and Origin (RELIABILITY 13, 16)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from loopml.client import Client

from .conftest import MAX_BODY, MAX_UPLOAD


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        step = min(size, total - sent)
        sent += step
        yield b"a" * step


def test_declared_oversize_json_body_is_413(http: TestClient) -> None:
    response = http.post(
        "/api/v1/projects",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": str(MAX_BODY + 1)},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_streamed_oversize_json_body_is_413(http: TestClient) -> None:
    response = http.post(
        "/api/v1/projects",
        content=_chunks(MAX_BODY * 3),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["details"]["limit_bytes"] == MAX_BODY


def test_oversize_upload_is_413_and_leaves_nothing(http: TestClient, client: Client) -> None:
    response = http.put(
        "/api/v1/projects/default/artifacts/big.bin",
        content=_chunks(MAX_UPLOAD + 1),
        headers={"content-type": "application/octet-stream"},
    )
    assert response.status_code == 413
    assert client.artifacts.list("default").items == []


def test_upload_at_the_limit_is_accepted(client: Client) -> None:
    info = client.artifacts.upload("default", b"z" * MAX_UPLOAD, "exact.bin")
    assert info.size == MAX_UPLOAD


def test_json_routes_refuse_other_media_types(http: TestClient) -> None:
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=" + "x" * 1_000_000,
        "",
    ]:
        # With an Authorization header the cross-site guard lets form types through (see
        # test_csrf.py); the media-type check still refuses them here.
        headers = {"content-type": content_type, "authorization": "Bearer lm_x"}
        response = http.post("/api/v1/projects", content=b'{"name": "x"}', headers=headers)
        assert response.status_code == 415, content_type[:40]
        assert "application/json" in response.json()["error"]["message"]
    pickled = http.post(
        "/api/v1/projects",
        content=b"\x80\x04\x95",
        headers={"content-type": "application/vnd.bentoml+pickle"},
    )
    assert pickled.status_code == 415


def test_json_with_charset_is_accepted(http: TestClient) -> None:
    response = http.post(
        "/api/v1/projects",
        content=b'{"name": "utf8"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201


def test_foreign_host_is_refused(http: TestClient) -> None:
    response = http.get("/api/v1/projects", headers={"host": "evil.example"})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["reason"] == "host_not_allowed"


def test_cross_origin_writes_are_refused(http: TestClient) -> None:
    evil = {"origin": "https://evil.example"}
    assert http.post("/api/v1/projects", json={"name": "x"}, headers=evil).status_code == 403
    assert http.delete("/api/v1/projects/default", headers=evil).status_code == 403
    # The test client's server is http://127.0.0.1 (port 80): another port is another origin.
    other_port = {"origin": "http://127.0.0.1:8765"}
    assert http.post("/api/v1/projects", json={"name": "x"}, headers=other_port).status_code == 403
    same = http.post(
        "/api/v1/projects", json={"name": "ok"}, headers={"origin": "http://127.0.0.1"}
    )
    assert same.status_code == 201
    assert "access-control-allow-origin" not in same.headers


def test_inference_paths_take_a_body_without_content_type_as_json() -> None:
    from loopml.platform.guard import is_inference_path

    assert is_inference_path("/v2/models/churn/infer")
    assert is_inference_path("/deployments/churn/predict")
    assert is_inference_path("/projects/p/deployments/churn/v2/models/churn/infer")
    assert not is_inference_path("/api/v1/projects/p/deployments")
    assert not is_inference_path("/api/v1/projects/p/tables/t/records")
    assert not is_inference_path("/deployments")


async def _raw_get(app: object, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """The app's answer to a GET whose header lines are exactly ``headers`` (a test client
    always sends one Host)."""
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v1/projects",
        "raw_path": b"/api/v1/projects",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)  # type: ignore[operator]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")  # type: ignore[misc]
    return int(sent[0]["status"]), body  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([(b"accept", b"*/*")], "host_missing"),
        ([(b"host", b"127.0.0.1"), (b"host", b"evil.example")], "host_repeated"),
        ([(b"host", b"evil.example"), (b"host", b"127.0.0.1")], "host_repeated"),
    ],
)
def test_a_missing_or_repeated_host_is_refused(
    http: TestClient, headers: list[tuple[bytes, bytes]], reason: str
) -> None:
    status, body = asyncio.run(_raw_get(http.app, headers))
    assert status == 400
    assert orjson.loads(body)["error"]["details"]["reason"] == reason
