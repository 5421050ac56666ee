"""The model server over HTTP (in-process ASGI): /predict, ids, limits, metrics, the sink,
and micro-batching of concurrent requests."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from starlette.testclient import TestClient

from loopml.serve import Columns, ModelRuntime, Prediction, PredictionRecord
from tests.unit.conftest import DEPLOYMENT, MODEL, VERSION, Served, make_app

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_predict_gives_labels_probabilities_and_classes(client: TestClient, cancer: Served) -> None:
    frame = cancer.frame.iloc[:20]

    response = client.post("/predict", json={"instances": cancer.records(slice(0, 20))})

    assert response.status_code == 200
    body = response.json()
    assert body["predictions"] == cancer.native.predict(frame).tolist()
    np.testing.assert_allclose(body["probabilities"], cancer.native.predict_proba(frame), atol=1e-4)
    assert body["classes"] == [0, 1]
    assert body["model"] == MODEL
    assert body["version"] == VERSION
    assert HEX32.fullmatch(body["inference_id"])
    assert response.headers["x-inference-id"] == body["inference_id"]


def test_predict_ignores_extra_columns_only_when_asked(client: TestClient, cancer: Served) -> None:
    rows = [{**r, "malignant": 1} for r in cancer.records(slice(0, 3))]

    refused = client.post("/predict", json={"instances": rows})
    answered = client.post("/predict", json={"instances": rows, "extra": "ignore"})

    _assert_error(refused, 422, "validation_error", r"unknown column\(s\) \['malignant'\]")
    assert answered.status_code == 200
    assert answered.json()["predictions"] == cancer.native.predict(cancer.frame.iloc[:3]).tolist()


def test_predict_with_string_classes_and_mixed_columns(mixed: Served) -> None:
    frame = mixed.frame.iloc[:15]
    with TestClient(make_app(mixed)) as client:
        body = client.post("/predict", json={"instances": mixed.records(slice(0, 15))}).json()

    assert body["predictions"] == mixed.native.predict(frame).tolist()
    assert body["classes"] == ["churn", "stay"]
    np.testing.assert_allclose(body["probabilities"], mixed.native.predict_proba(frame), atol=1e-4)


@pytest.mark.parametrize("name", ["diabetes", "skops_regressor"])
def test_predict_for_a_regressor_has_no_probabilities(
    name: str, request: pytest.FixtureRequest
) -> None:
    served: Served = request.getfixturevalue(name)
    frame = served.frame.iloc[:10]
    with TestClient(make_app(served)) as client:
        body = client.post("/predict", json={"instances": served.records(slice(0, 10))}).json()

    np.testing.assert_allclose(body["predictions"], served.native.predict(frame), rtol=1e-4)
    assert "probabilities" not in body
    assert "classes" not in body


def _assert_error(response: httpx.Response, status: int, code: str, message: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == code
    assert re.search(message, body["error"]["message"]), body["error"]["message"]
    assert HEX32.fullmatch(body["inference_id"])
    assert response.headers["x-inference-id"] == body["inference_id"]
    return body


def test_wrong_input_is_a_clear_422(client: TestClient, cancer: Served) -> None:
    rows = cancer.records(slice(0, 3))
    rows[2]["mean texture"] = "high"

    response = client.post("/predict", json={"instances": rows})

    body = _assert_error(
        response, 422, "validation_error", r"column 'mean texture' \(float\): row 2 has the string"
    )
    assert body["error"]["details"]["row"] == 2
    assert response.headers["x-loopml-error-code"] == "validation_error"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([{"mean radius": 1}], r'a JSON object \{"instances"'),
        ({"rows": []}, r'a JSON object \{"instances"'),
        ({"instances": [], "rest": 1}, r"unknown field\(s\) \['rest'\]"),
        ({"instances": [], "extra": 1}, r'"extra" must be "forbid" \(the default'),
    ],
)
def test_predict_body_shape_is_checked(client: TestClient, body: Any, message: str) -> None:
    _assert_error(client.post("/predict", json=body), 422, "validation_error", message)


def test_too_many_rows_is_422(cancer: Served) -> None:
    with TestClient(make_app(cancer, max_rows=5)) as client:
        response = client.post("/predict", json={"instances": cancer.records(slice(0, 6))})

    _assert_error(response, 422, "validation_error", "more than the limit of 5")


def test_invalid_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/predict", content=b'{"instances": [', headers={"content-type": "application/json"}
    )

    _assert_error(response, 400, "bad_request", "not valid JSON")


@pytest.mark.parametrize(
    "content_type", ["application/x-python-pickle", "application/vnd.bentoml+pickle", "text/plain"]
)
def test_non_json_bodies_are_415(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/predict", content=b"\x80\x04\x95", headers={"content-type": content_type}
    )

    _assert_error(response, 415, "unsupported_media_type", "must be JSON")


def test_declared_oversized_body_is_413_unread(cancer: Served) -> None:
    with TestClient(make_app(cancer, max_body_bytes=2048)) as client:
        response = client.post("/predict", json={"instances": cancer.records(slice(0, 50))})

    _assert_error(response, 413, "payload_too_large", "larger than the limit of 2048 bytes")


def test_streamed_oversized_body_is_cut_off_with_413(cancer: Served) -> None:
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1000):
            sent.append(1)
            yield b" " * 1024

    async def scenario() -> httpx.Response:
        app = make_app(cancer, max_body_bytes=4096)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:
            return await client.post(
                "/predict", content=chunks(), headers={"content-type": "application/json"}
            )

    response = asyncio.run(scenario())

    _assert_error(response, 413, "payload_too_large", "limit of 4096 bytes")
    assert len(sent) < 10  # refused as soon as the limit was crossed, not after 1 MB


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/v2/health/live", None, 200),
        ("GET", "/v2/health/ready", None, 200),
        ("GET", "/v2", None, 200),
        ("GET", f"/v2/models/{MODEL}", None, 200),
        ("GET", f"/v2/models/{MODEL}/ready", None, 200),
        ("GET", "/v2/models/other", None, 404),
        ("GET", "/no/such/route", None, 404),
        ("GET", "/predict", None, 405),
        ("POST", "/predict", {"instances": "x"}, 422),
        ("POST", f"/v2/models/{MODEL}/infer", {"inputs": []}, 422),
        ("POST", f"/v2/models/{MODEL}/versions/99/infer", {"inputs": []}, 404),
    ],
)
def test_every_json_answer_carries_the_inference_id(
    client: TestClient, method: str, path: str, body: Any, status: int
) -> None:
    response = client.request(method, path, json=body)

    assert response.status_code == status, response.text
    identity = response.headers["x-inference-id"]
    assert HEX32.fullmatch(identity)
    assert response.json()["inference_id"] == identity


def test_metrics_answer_carries_the_inference_id_header(client: TestClient) -> None:
    response = client.get("/metrics")

    assert HEX32.fullmatch(response.headers["x-inference-id"])


def test_ids_are_new_per_request(client: TestClient) -> None:
    ids = {client.get("/v2/health/live").headers["x-inference-id"] for _ in range(5)}

    assert len(ids) == 5


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("order-42:a.b_c", True),
        ("3f2b8c1e-8d4e-4c1a-9f55-0c2d7e1b6a90", True),
        ("x" * 129, False),
        ("bad id", False),
        ("<script>", False),
        ("-leading-dash", False),
    ],
)
def test_client_request_id_is_used_only_if_safe(
    client: TestClient, cancer: Served, given: str, kept: bool
) -> None:
    response = client.post(
        "/predict",
        json={"instances": cancer.records(slice(0, 1))},
        headers={"X-Request-Id": given},
    )

    identity = response.json()["inference_id"]
    assert response.headers["x-inference-id"] == identity
    assert (identity == given) is kept
    if not kept:
        assert HEX32.fullmatch(identity)


def test_inference_id_field_in_the_body_is_used_if_safe(client: TestClient, cancer: Served) -> None:
    rows = cancer.records(slice(0, 1))

    given = client.post("/predict", json={"instances": rows, "inference_id": "txn-7"})
    unsafe = client.post("/predict", json={"instances": rows, "inference_id": "a b"})

    assert given.json()["inference_id"] == "txn-7"
    assert given.headers["x-inference-id"] == "txn-7"
    assert HEX32.fullmatch(unsafe.json()["inference_id"])


class ListSink:
    """A real PredictionSink: keeps the records in memory."""

    def __init__(self) -> None:
        self.records: list[PredictionRecord] = []

    def record(self, record: PredictionRecord) -> None:
        self.records.append(record)


class BrokenSink:
    def record(self, record: PredictionRecord) -> None:
        raise RuntimeError("storage is gone")


def test_sink_gets_each_prediction_with_its_inputs(wine: Served) -> None:
    sink = ListSink()
    with TestClient(make_app(wine, sink=sink)) as client:
        sent = time.perf_counter()
        first = client.post("/predict", json={"instances": wine.records(slice(0, 4))}).json()
        request_s = time.perf_counter() - sent
        client.post("/predict", json={"instances": [{"alcohol": "strong"}]})

    assert len(sink.records) == 1  # the refused request is not a prediction
    record = sink.records[0]
    assert record.inference_id == first["inference_id"]
    assert (record.deployment, record.model, record.version) == (DEPLOYMENT, MODEL, VERSION)
    assert record.protocol == "predict"
    assert record.rows == 4
    assert record.predictions.tolist() == first["predictions"]
    assert record.probabilities is not None
    assert record.probabilities.shape == (4, 3)
    assert record.classes == [0, 1, 2]
    np.testing.assert_array_equal(record.inputs["alcohol"], wine.frame["alcohol"].iloc[:4])
    # The latency recorded lies within the request's round trip, measured around it here.
    assert 0 < record.latency_s <= request_s, (record.latency_s, request_s)
    assert record.timestamp > 1.7e9


def test_failing_sink_never_fails_the_request(cancer: Served) -> None:
    with TestClient(make_app(cancer, sink=BrokenSink())) as client:
        response = client.post("/predict", json={"instances": cancer.records(slice(0, 2))})
        metrics = client.get("/metrics").text

    assert response.status_code == 200
    assert _sample(metrics, "loopml_model_sink_errors_total") == 1


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` whose labels include ``labels`` (0 if absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_errors_latency_and_batches(
    client: TestClient, cancer: Served
) -> None:
    route = {"route": "/predict"}
    before = client.get("/metrics").text

    for _ in range(3):
        client.post("/predict", json={"instances": cancer.records(slice(0, 10))})
    client.post("/predict", json={"instances": [{"nope": 1}]})
    after = client.get("/metrics")

    assert after.headers["content-type"].startswith("text/plain; version=")
    text = after.text
    ok = {**route, "status": "200"}
    assert (
        _sample(text, "loopml_model_requests_total", **ok)
        == _sample(before, "loopml_model_requests_total", **ok) + 3
    )
    assert _sample(text, "loopml_model_requests_total", **route, status="422") == 1
    assert _sample(text, "loopml_model_errors_total", **route, code="validation_error") == 1
    assert _sample(text, "loopml_model_request_duration_seconds_count", **route) == 4
    assert _sample(text, "loopml_model_request_duration_seconds_bucket", **route, le="+Inf") == 4
    assert _sample(text, "loopml_model_rows_total") == 30
    assert _sample(text, "loopml_model_batch_size_count") == 3
    assert _sample(text, "loopml_model_batch_rows_sum") == 30
    assert _sample(text, "loopml_model_inference_duration_seconds_count") == 3
    labels = {"deployment": DEPLOYMENT, "model": MODEL, "version": str(VERSION)}
    assert _sample(text, "loopml_model_requests_total", **labels, **ok) == 3
    assert _sample(text, "loopml_model_info", **labels, format="onnx") == 1
    assert "# TYPE loopml_model_request_duration_seconds histogram" in text


def test_metric_label_values_are_escaped(cancer: Served) -> None:
    from loopml.serve import ModelServerSettings, create_model_app

    app = create_model_app(
        cancer.runtime,
        deployment='a"b\\c\nd',
        model_name=MODEL,
        version=VERSION,
        settings=ModelServerSettings(),
    )
    with TestClient(app) as client:
        text = client.get("/metrics").text

    assert 'deployment="a\\"b\\\\c\\nd"' in text
    assert all(line.count("{") <= 1 for line in text.splitlines())


async def _concurrent_predictions(
    served: Served, count: int, **settings: Any
) -> tuple[list[httpx.Response], int]:
    app = make_app(served, **settings)
    runtime = served.runtime
    async with app.router.lifespan_context(app):
        calls = runtime.model_calls
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:
            responses = await asyncio.gather(
                *(
                    client.post("/predict", json={"instances": served.records(slice(i, i + 2))})
                    for i in range(count)
                )
            )
        return list(responses), runtime.model_calls - calls


def test_concurrent_requests_share_model_calls(cancer: Served) -> None:
    responses, calls = asyncio.run(
        _concurrent_predictions(cancer, 24, max_batch_size=32, max_wait_ms=20)
    )

    assert calls < 24 / 2
    for i, response in enumerate(responses):
        assert response.status_code == 200
        frame = cancer.frame.iloc[i : i + 2]
        body = response.json()
        assert body["predictions"] == cancer.native.predict(frame).tolist()
        np.testing.assert_allclose(
            body["probabilities"], cancer.native.predict_proba(frame), atol=1e-4
        )


def test_without_batching_each_request_is_a_model_call(cancer: Served) -> None:
    responses, calls = asyncio.run(_concurrent_predictions(cancer, 12, max_batch_size=1))

    assert all(r.status_code == 200 for r in responses)
    assert calls == 12


def test_ready_is_false_while_shutting_down(cancer: Served) -> None:
    app = make_app(cancer)

    async def scenario() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:
            async with app.router.lifespan_context(app):
                during = (await client.get("/v2/health/ready")).status_code
            after = await client.get("/v2/health/ready")
            assert orjson.loads(after.content)["ready"] is False
            return during, after.status_code

    assert asyncio.run(scenario()) == (200, 503)


class SlowRuntime(ModelRuntime):
    """The real runtime, slowed down, so that requests pile up behind it."""

    def predict_many(self, batch: Sequence[Columns]) -> list[Prediction]:
        time.sleep(0.2)
        return super().predict_many(batch)


def test_overload_is_503_with_retry_after(cancer: Served) -> None:
    slow = Served(cancer.native, cancer.frame, cancer.package, SlowRuntime(cancer.runtime.model))
    app = make_app(slow, max_queue=1)

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:
            body = {"instances": cancer.records(slice(0, 1))}
            return list(
                await asyncio.gather(*(client.post("/predict", json=body) for _ in range(3)))
            )

    responses = asyncio.run(scenario())

    assert sorted(r.status_code for r in responses) == [200, 503, 503]
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "overloaded"
