"""Open Inference Protocol (KServe V2) conformance through a real client library
(``tritonclient.http``), hostile payloads, and a replica SIGKILLed under load losing no
acknowledged prediction-log row; against real replica processes and the platform gateway.

One platform serves the module (a logistic regression registered as ``cancer`` version 1)
with deployment ``conf``; "direct" is one of its replica processes, reached at its own port.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from loopml.client import Client
from loopml.core.deployments import DeploymentStatus
from tests.unit.deploy.deploy_support import (
    MODEL,
    Platform,
    cancer_frame,
    fit,
    home_settings,
    instances,
    register_model,
    replica_processes,
    wait_until,
)
from tests.waiting import eventually

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.timeout(300)
PROJECT = "default"
DEPLOYMENT = "conf"
# tritonclient sends its JSON infer body with no Content-Type; the gateway takes that as JSON
# (tested below), and the client is also given the header explicitly.
_JSON_TYPE = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    settings = home_settings(tmp_path_factory.mktemp("conformance-home"))
    running = Platform(settings)
    running.start()
    try:
        register_model(settings, running.store, running.artifacts, fit(1.0))
        running.serving.control.create(PROJECT, DEPLOYMENT, {"model": f"{MODEL}/1"}, actor="t")
        _ready(running, DEPLOYMENT)
        yield running
    finally:
        running.stop()
    assert replica_processes() == [], "replicas outlived the platform"


def _ready(platform: Platform, name: str, timeout: float = 90) -> None:
    def ready() -> bool:
        deployment = platform.serving.control.get(PROJECT, name)
        assert deployment.status != DeploymentStatus.FAILED, deployment.status_message
        return deployment.status == DeploymentStatus.READY

    wait_until(ready, timeout, f"deployment {name} did not become ready")


def _replica_url(platform: Platform) -> str:
    routes = platform.serving.gateway.source.routes(PROJECT, DEPLOYMENT)
    assert routes is not None
    assert routes.revisions[0].backends
    return routes.revisions[0].backends[0].url


@pytest.fixture(scope="module", params=["direct", "gateway"])
def target(request: pytest.FixtureRequest, platform: Platform) -> tuple[str, str]:
    """(base URL, the model name to put in V2 paths). The gateway answers V2 health at
    ``/deployments/{name}/v2/health/*`` (not at the root: the platform serves many
    deployments), so the client's base URL is the deployment's."""
    if request.param == "direct":
        return _replica_url(platform), MODEL
    return f"{platform.url}/deployments/{DEPLOYMENT}", DEPLOYMENT


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60, trust_env=False) as client:
        yield client


def _expected(rows: int) -> tuple[np.ndarray, np.ndarray]:
    frame, _ = cancer_frame()
    model = fit(1.0)
    head = frame.head(rows)
    return model.predict(head), model.predict_proba(head)


# ---------------------------------------------------------------- tritonclient


def test_tritonclient_health_metadata_and_infer(target: tuple[str, str]) -> None:
    url, model = target
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(model)
        assert client.is_model_ready(model, "1")
        assert not _ready_or_error(client, "no-such-model")

        metadata = client.get_model_metadata(model)
        assert metadata["name"] == MODEL
        assert metadata["versions"] == ["1"]
        inputs = {i["name"]: i for i in metadata["inputs"]}
        assert list(inputs) == [f"f{i}" for i in range(8)]
        assert {i["datatype"] for i in inputs.values()} == {"FP64"}
        outputs = {o["name"]: o for o in metadata["outputs"]}
        assert set(outputs) == {"predict", "predict_proba"}

        frame, _ = cancer_frame()
        rows = 7
        tensors = []
        for name, spec in inputs.items():
            tensor = httpclient.InferInput(name, [rows], spec["datatype"])
            tensor.set_data_from_numpy(frame[name].head(rows).to_numpy(np.float64), False)
            tensors.append(tensor)
        asked = [
            httpclient.InferRequestedOutput("predict", binary_data=False),
            httpclient.InferRequestedOutput("predict_proba", binary_data=False),
        ]
        result = client.infer(
            model, tensors, outputs=asked, request_id="conf-1", headers=_JSON_TYPE
        )
        labels, proba = _expected(rows)
        assert result.get_response()["id"] == "conf-1"
        predict = result.as_numpy("predict")
        assert predict.shape == (rows,)
        assert predict.tolist() == labels.tolist()
        probabilities = result.as_numpy("predict_proba")
        assert probabilities.shape == (rows, 2)
        np.testing.assert_allclose(probabilities, proba, atol=1e-5)

        # Only the output asked for; the versioned path too.
        only = [httpclient.InferRequestedOutput("predict", binary_data=False)]
        result = client.infer(model, tensors, model_version="1", outputs=only, headers=_JSON_TYPE)
        assert [o["name"] for o in result.get_response()["outputs"]] == ["predict"]
        assert result.as_numpy("predict").tolist() == labels.tolist()

        # A type the signature refuses: the client gets the server's error (a 4xx).
        wrong = httpclient.InferInput("f0", [rows], "BYTES")
        wrong.set_data_from_numpy(np.array([b"x"] * rows, dtype=np.object_), False)
        with pytest.raises(InferenceServerException) as raised:
            client.infer(model, [wrong, *tensors[1:]], outputs=only, headers=_JSON_TYPE)
        # The V2 spec's error body is {"error": "<message>"}: tritonclient reads it as the
        # exception's message (a string, not loopml's own error object).
        error = raised.value.message()
        assert isinstance(error, str), error
        assert "f0" in error
        assert "f0" in str(raised.value)
    finally:
        client.close()


def test_tritonclient_infer_through_the_gateway_without_a_content_type(
    platform: Platform, http: httpx.Client
) -> None:
    answer = http.post(
        f"{platform.url}/v2/models/{DEPLOYMENT}/infer",
        content=httpx.Request("POST", "/", json=_infer_body()).content,
    )
    assert answer.status_code == 200, answer.text


def test_the_gateway_root_is_a_v2_server(platform: Platform, http: httpx.Client) -> None:
    """At the platform's root: the gateway's own health and metadata, and the deployment
    addressed by its name or by the model it serves; errors in the protocol's body."""
    client = httpclient.InferenceServerClient(platform.url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.get_server_metadata()["name"] == "loopml"
        for name in (DEPLOYMENT, MODEL):
            assert client.is_model_ready(name)
            assert client.get_model_metadata(name)["name"] == MODEL
        frame, _ = cancer_frame()
        tensors = []
        for column in frame.columns:
            tensor = httpclient.InferInput(column, [3], "FP64")
            tensor.set_data_from_numpy(frame[column].head(3).to_numpy(np.float64), False)
            tensors.append(tensor)
        only = [httpclient.InferRequestedOutput("predict", binary_data=False)]
        result = client.infer(MODEL, tensors, outputs=only, headers=_JSON_TYPE)
        assert result.as_numpy("predict").tolist() == _expected(3)[0].tolist()
    finally:
        client.close()

    for method, path, status in (
        ("GET", f"/v2/models/{DEPLOYMENT}/infer", 405),
        ("POST", f"/v2/models/{DEPLOYMENT}", 405),
        ("POST", "/v2/health/live", 405),
        ("GET", "/v2/models/no-such-model", 404),
        ("GET", "/v2/health/sideways", 404),
    ):
        answer = http.request(method, platform.url + path)
        assert answer.status_code == status, (method, path, answer.text)
        assert isinstance(answer.json()["error"], str), (method, path, answer.text)


def _ready_or_error(client: Any, model: str) -> bool:
    try:
        return bool(client.is_model_ready(model))
    except InferenceServerException:
        return False


# ---------------------------------------------------------------- hostile payloads


def _infer_body(rows: int = 2, **overrides: Any) -> dict[str, Any]:
    frame, _ = cancer_frame()
    tensors = [
        {"name": n, "shape": [rows], "datatype": "FP64", "data": frame[n].head(rows).tolist()}
        for n in frame.columns
    ]
    return {"inputs": tensors, **overrides}


def _hostile(target: tuple[str, str]) -> list[tuple[str, str, dict[str, Any], int, str]]:
    """(label, path, httpx request arguments, expected status, a word the message holds)."""
    url, model = target
    infer = f"{url}/v2/models/{model}/infer"
    predict = f"{url}/predict"
    body = _infer_body()
    wrong_type = _infer_body()
    wrong_type["inputs"][0] = {"name": "f0", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}
    bad_value = _infer_body()
    bad_value["inputs"][1]["data"] = [1.0, "x"]
    missing = _infer_body()
    del missing["inputs"][3]
    # Over the model server's default limit (16 MiB; a 10 MB body is within it).
    big = (
        b'{"inputs": [{"name": "f0", "shape": [1], "datatype": "FP64", "data": ['
        + b"1.0," * (17 * 1024 * 1024 // 4)
        + b"1.0]}]}"
    )
    # 10 MB (the example), within the byte limits: refused for what it holds.
    rows = 10_000_000 // 4
    ten_mb = (
        b'{"inputs": [{"name": "f0", "shape": [%d], "datatype": "FP64", "data": [' % rows
        + b"1.0," * (rows - 1)
        + b"1.0]}]}"
    )
    ten_mb_predict = b'{"instances": [' + b'{"f0": 1},' * (10_000_000 // 10) + b'{"f0": 1}]}'
    canary = pickle.dumps({"instances": instances()})
    return [
        ("wrong datatype", infer, {"json": wrong_type}, 422, "f0"),
        ("wrong value", infer, {"json": bad_value}, 422, "f1"),
        ("missing column", infer, {"json": missing}, 422, "missing"),
        ("predict wrong type", predict, {"json": {"instances": [{"f0": "a"}]}}, 422, "f0"),
        ("predict missing", predict, {"json": {"instances": [{"f0": 1.0}]}}, 422, "f1"),
        ("not JSON", infer, _raw(b'{"inputs": [', "application/json"), 400, "JSON"),
        ("not an object", infer, {"json": [1, 2]}, 422, "invalid"),
        ("17 MiB", infer, _raw(big, "application/json"), 413, "limit"),
        ("17 MiB predict", predict, _raw(big, "application/json"), 413, "limit"),
        ("10 MB", infer, _raw(ten_mb, "application/json"), 422, "missing"),
        ("10 MB predict", predict, _raw(ten_mb_predict, "application/json"), 422, "limit"),
        ("pickle type", infer, _raw(canary, "application/python-pickle"), 415, "JSON"),
        ("x-pickle", predict, _raw(canary, "application/x-python-pickle"), 415, "JSON"),
        ("vnd pickle", predict, _raw(canary, "application/vnd.bentoml+pickle"), 415, "JSON"),
        ("octet-stream", infer, _raw(canary, "application/octet-stream"), 415, "JSON"),
        ("pickle as JSON", predict, _raw(canary, "application/json"), 400, "JSON"),
        ("binary extension", infer, {"json": body, "headers": _binary_header()}, 415, "binary"),
    ]


def _raw(content: bytes, media: str) -> dict[str, Any]:
    return {"content": content, "headers": {"content-type": media}}


def _binary_header() -> dict[str, str]:
    return {"inference-header-content-length": "10"}


def test_hostile_payloads_get_a_4xx_with_a_message_and_the_replica_stays_healthy(
    target: tuple[str, str], http: httpx.Client, platform: Platform
) -> None:
    url, model = target
    pids = {p.pid for p in replica_processes(DEPLOYMENT)}
    for label, path, kwargs, status, word in _hostile(target):
        answer = http.post(path, **kwargs)
        assert answer.status_code == status, (label, answer.status_code, answer.text[:300])
        body = answer.json()
        if "/v2/" in path:  # the Open Inference Protocol's error body: a string message
            message, code = body["error"], body["code"]
        else:
            message, code = body["error"]["message"], body["error"]["code"]
        assert isinstance(message, str), (label, body)
        assert word.lower() in message.lower(), (label, body)
        assert answer.headers["x-loopml-error-code"] == code
        assert http.get(f"{url}/v2/health/live").status_code == 200, label
    # Still serving, by the same process (nothing crashed it), and never unpickled.
    assert {p.pid for p in replica_processes(DEPLOYMENT)} == pids
    assert http.get(f"{url}/v2/models/{model}/ready").status_code == 200
    answer = http.post(f"{url}/v2/models/{model}/infer", json=_infer_body())
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == _expected(2)[0].tolist()


# ---------------------------------------------------------------- prediction log


def _inference_ids(platform: Platform, name: str) -> set[str]:
    table = name.replace("-", "_") + "__predictions"
    with Client(platform.url) as client:
        records = client.sql(PROJECT, f"SELECT DISTINCT inference_id FROM {table}").records()
    return {r["inference_id"] for r in records}


def _roles(platform: Platform, name: str) -> set[str]:
    table = name.replace("-", "_") + "__predictions"
    with Client(platform.url) as client:
        records = client.sql(PROJECT, f"SELECT DISTINCT role FROM {table}").records()
    return {r["role"] for r in records}


def test_a_replica_killed_under_load_loses_no_acknowledged_prediction_row(
    platform: Platform,
) -> None:
    name = "kill-log"
    control = platform.serving.control
    control.create(
        PROJECT, name, {"model": f"{MODEL}/1", "min_replicas": 2, "max_replicas": 2}, actor="t"
    )
    _ready(platform, name)
    acknowledged: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=60, trust_env=False) as http:
            while not stop.is_set():
                try:
                    answer = platform.predict(http, name)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if answer.status_code == 200:
                    acknowledged.append(answer.json()["inference_id"])
                else:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")

    workers = [threading.Thread(target=load) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: len(acknowledged) >= 30, 60, "no load")
        first = replica_processes(name)[0]
        # Right after answers it has only queued, never flushed.
        os.kill(first.pid, signal.SIGKILL)
        wait_until(
            lambda: (
                len(pids := {p.pid for p in replica_processes(name)}) == 2 and first.pid not in pids
            ),
            60,
            "the replica was not restarted",
        )
        wait_until(lambda: control.get(PROJECT, name).replicas_ready == 2, 60, "not back to 2")
        after = len(acknowledged)
        wait_until(lambda: len(acknowledged) > after + 20, 30, "no answers after the restart")
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)
    assert failures == []
    answered = set(acknowledged)

    def logged() -> set[str]:
        return answered - _inference_ids(platform, name)

    eventually(
        lambda: not logged(),
        60,
        f"all {len(answered)} acknowledged predictions logged",
        interval_s=0.5,
        describe=lambda: f"{len(logged())} are not logged",
    )
    rows = _roles(platform, name)
    assert rows == {"primary"}, rows
    control.delete(PROJECT, name, actor="t")
    assert replica_processes(name) == []
