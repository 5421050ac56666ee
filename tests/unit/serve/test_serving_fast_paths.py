"""The serving hot paths: the all-number column conversion, the inference fast path past the
router, the V2 error body, and the gateway's upstream client (against a real HTTP
server standing in for a replica: headers, query string, timeouts, keep-alive)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from loopml.core.errors import ValidationError
from loopml.packaging import columns as _columns
from loopml.packaging._manifest import ColumnSpec, Signature
from loopml.serve.gateway.app import Gateway
from loopml.serve.gateway.config import GatewayConfig
from loopml.serve.gateway.routing import Backend, RevisionRoute, Routes
from loopml.serve.oip import is_v2_path
from tests.unit.conftest import MODEL, VERSION, Served
from tests.unit.serve.test_deploy_gateway import FixedRoutes

# ---------------------------------------------------------------- all-number columns


def _signature(*types: str) -> Signature:
    return Signature(
        inputs=[ColumnSpec(name=f"c{i}", type=t) for i, t in enumerate(types)],
        outputs=[ColumnSpec(name="y", type="float")],
        task="regression",
    )


def _per_column(signature: Signature, instances: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    columns = _columns._from_records(signature, instances)
    return {s.name: _columns.to_array(s, c) for s, c in zip(signature.inputs, columns, strict=True)}


def test_all_number_columns_convert_as_the_per_column_path_does() -> None:
    signature = _signature("float", "integer", "float")
    instances: list[dict[str, Any]] = [
        {"c0": 1.5, "c1": 2, "c2": None},
        {"c0": -3, "c1": 4.0, "c2": 1e300},
    ]

    fast = _columns.from_instances(signature, instances, max_rows=None)

    assert _columns._plan(signature) is not None  # the fast path ran
    expected = _per_column(signature, instances)
    assert fast.keys() == expected.keys()
    for name, array in expected.items():
        np.testing.assert_array_equal(fast[name], array)
        assert fast[name].dtype == np.float64
    arrays = _columns.from_instances(signature, [[1, 2, 3]], max_rows=None)
    assert [a.tolist() for a in arrays.values()] == [[1.0], [2.0], [3.0]]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"c0": 1.0, "c1": 2.5, "c2": 0}, r"column 'c1' \(integer\): row 1 has 2\.5"),
        ({"c0": True, "c1": 2, "c2": 0}, r"column 'c0' \(float\): row 1 has true"),
        ({"c0": 1.0, "c1": 2, "c2": "x"}, r"column 'c2' \(float\): row 1 has the string 'x'"),
        ({"c0": 1.0, "c1": 2, "c2": [1]}, r"column 'c2' \(float\): row 1 has an array"),
        ({"c0": 10**400, "c1": 2, "c2": 0}, r"column 'c0' \(float\): row 1 .* too large"),
    ],
)
def test_all_number_columns_refuse_what_the_per_column_path_refuses(
    row: dict[str, Any], message: str
) -> None:
    signature = _signature("float", "integer", "float")
    good = {"c0": 0.0, "c1": 1, "c2": 2.0}

    with pytest.raises(ValidationError, match=message):
        _columns.from_instances(signature, [good, row], max_rows=None)


def test_v2_tensors_of_numbers_convert_as_the_per_column_path_does() -> None:
    signature = _signature("float", "integer", "float")
    rows = [[1.5, 2, None], [-3, 4.0, 1e300]]
    records = [dict(zip(("c0", "c1", "c2"), r, strict=True)) for r in rows]
    expected = _per_column(signature, records)

    by_row = _columns.tensor_matrix(signature, [v for r in rows for v in r], by_row=True)
    one_after_another = [v for column in zip(*rows, strict=True) for v in column]
    by_column = _columns.tensor_matrix(signature, one_after_another, by_row=False)

    for matrix in (by_row, by_column):
        assert matrix is not None  # the fast path ran
        assert matrix.dtype == np.float64
        assert matrix.flags.c_contiguous
        for line, array in zip(matrix, expected.values(), strict=True):
            np.testing.assert_array_equal(line, array)


@pytest.mark.parametrize(
    ("signature", "data"),
    [
        (_signature("float", "integer"), [1.0, 2.5]),  # not whole in an integer column
        (_signature("float", "float"), [1.0, True]),
        (_signature("float", "float"), [1.0, "x"]),
        (_signature("float", "float"), [1.0, 10**400]),
        (_signature("float", "string"), [1.0, 2.0]),
        (_signature("float"), [1.0]),
    ],
)
def test_v2_tensors_the_fast_path_leaves_to_the_checks(
    signature: Signature, data: list[Any]
) -> None:
    assert _columns.tensor_matrix(signature, data, by_row=True) is None
    assert _columns.tensor_matrix(signature, data, by_row=False) is None  # one row


@pytest.mark.parametrize("layout", ["matrix", "columns"])
@pytest.mark.parametrize(
    ("datatype", "bad", "message"),
    [
        ("FP16", 70000.0, r"is FP16 but element 1 is 70000\.0, outside the range"),
        ("INT64", None, r"is INT64 but element 1 is null"),
        ("FP32", "oops", r"is FP32 but element 1 is a string \(oops\)"),
        ("UINT8", 300, r"is UINT8 but element 1 is 300, outside the range UINT8 can hold"),
    ],
)
def test_v2_tensors_of_an_all_number_model_keep_every_check(
    client: TestClient, cancer: Served, layout: str, datatype: str, bad: Any, message: str
) -> None:
    # Whole numbers from 0 to 99: every datatype here holds them.
    frame = (cancer.frame.iloc[:2] % 100).round().astype(int)

    def request(second: Any) -> dict[str, Any]:
        if layout == "matrix":
            data: list[Any] = frame.to_numpy().ravel().tolist()
            data[1] = second
            shape = [2, frame.shape[1]]
            return {"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]}
        tensors = [
            {"name": c, "shape": [2], "datatype": datatype, "data": frame[c].tolist()}
            for c in frame.columns
        ]
        tensors[0]["data"][1] = second
        return {"inputs": tensors}

    assert client.post(f"/v2/models/{MODEL}/infer", json=request(7)).status_code == 200

    response = client.post(f"/v2/models/{MODEL}/infer", json=request(bad))

    assert response.status_code == 422, response.text
    assert re.search(message, response.json()["error"]), response.text


# ---------------------------------------------------------------- the model server


def test_inference_paths_skip_the_router_but_keep_labels_errors_and_methods(
    client: TestClient, cancer: Served
) -> None:
    rows = cancer.records(slice(0, 2))
    assert client.post("/predict", json={"instances": rows}).status_code == 200
    tensors = [
        {"name": c, "shape": [2], "datatype": "FP64", "data": cancer.frame[c].iloc[:2].tolist()}
        for c in cancer.frame.columns
    ]
    versioned = f"/v2/models/{MODEL}/versions/{VERSION}/infer"
    assert client.post(versioned, json={"inputs": tensors}).status_code == 200
    other = client.post(f"/v2/models/{MODEL}/versions/99/infer", json={"inputs": tensors})
    assert other.status_code == 404
    assert "is not served here" in other.json()["error"]  # the V2 body
    assert client.post(f"/v2/models/{MODEL}/infer/extra", json={}).status_code == 404
    assert client.post("/v2/models//infer", json={}).status_code == 404
    wrong_method = client.get("/predict")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"  # not a V2 path

    metrics = client.get("/metrics").text
    assert 'route="/predict",status="200"' in metrics
    assert 'route="/v2/models/{name}/versions/{version}/infer",status="200"' in metrics
    assert 'route="/v2/models/{name}/versions/{version}/infer",status="404"' in metrics


@pytest.mark.parametrize(
    ("path", "v2"),
    [
        ("/v2", True),
        ("/v2/models/churn/infer", True),
        ("/deployments/churn/v2", True),
        ("/deployments/churn/v2/models/churn/infer", True),
        ("/projects/p/deployments/churn/v2/health/ready", True),
        ("/predict", False),
        ("/deployments/churn/predict", False),
        ("/projects/p/deployments/churn/predict", False),
        ("/v2x", False),
        ("/api/v1/models", False),
    ],
)
def test_v2_paths_are_recognised(path: str, v2: bool) -> None:
    assert is_v2_path(path) is v2


# ---------------------------------------------------------------- the gateway's upstream


class _Replica(BaseHTTPRequestHandler):
    """Answers like a replica; ``/slow`` paths take a second. Records what it got."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[dict[str, Any]]] = []
    connections: ClassVar[set[int]] = set()
    answered: ClassVar[list[str]] = []  # paths whose answer was written, in order

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        _Replica.seen.append(
            {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
        )
        _Replica.connections.add(self.client_address[1])
        if "slow" in self.path:
            time.sleep(1.0)
        answer = json.dumps({"echo": len(body)}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.send_header("x-inference-id", "from-the-replica")
        self.send_header("x-replica-secret", "not for clients")
        self.end_headers()
        self.wfile.write(answer)
        _Replica.answered.append(self.path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def replica() -> Iterator[str]:
    _Replica.seen.clear()
    _Replica.connections.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Replica)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _gateway_client(url: str, timeout_s: float) -> tuple[Gateway, TestClient]:
    revision = RevisionRoute(1, "cancer", 1, 100, (Backend(url, 1, "cancer", 1),))
    gateway = Gateway(
        FixedRoutes(Routes("default", "churn", (revision,))),
        GatewayConfig(activation_timeout_s=0.3, connect_timeout_s=0.5, timeout_s=timeout_s),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        yield
        await gateway.close()

    app = Starlette(routes=gateway.routes(), lifespan=lifespan)
    return gateway, TestClient(app, base_url="http://127.0.0.1")


def test_the_upstream_call_passes_what_it_should_and_keeps_connections(replica: str) -> None:
    answers: list[Any] = []
    gateway, client = _gateway_client(replica, timeout_s=5)
    gateway.on_answer = lambda answer: answers.append((answer, answer.role))
    with client:
        for _ in range(5):
            answer = client.post(
                "/deployments/churn/predict?a=1&b=%2F",
                content=b'{"instances": []}',
                headers={
                    "content-type": "application/json",
                    "x-request-id": "req-1",
                    "cookie": "session=secret",
                },
            )
            assert answer.status_code == 200, answer.text
        no_type = client.post("/deployments/churn/v2/models/churn/infer", content=b"{}")
        assert no_type.status_code == 200
    assert answer.json() == {"echo": 17}
    assert answer.headers["x-inference-id"] == "from-the-replica"
    assert answer.headers["x-loopml-revision"] == "1"
    assert "x-replica-secret" not in answer.headers
    first = _Replica.seen[0]
    assert first["path"] == "/predict?a=1&b=%2F"  # the query string as the client sent it
    assert first["headers"]["x-request-id"] == "req-1"
    assert first["headers"]["content-type"] == "application/json"
    assert "cookie" not in first["headers"]
    # No Content-Type is invented for a body that had none (the replica would refuse one).
    assert "content-type" not in _Replica.seen[-1]["headers"]
    assert _Replica.seen[-1]["path"] == "/v2/models/cancer/infer"
    assert len(_Replica.connections) == 1  # one kept-alive connection for all six
    assert [role for _, role in answers] == ["primary"] * 6
    assert answers[0][0].inference_id == "from-the-replica"


def test_a_replica_slower_than_the_timeout_is_a_504(replica: str) -> None:
    _, client = _gateway_client(replica, timeout_s=0.3)
    with client:
        started = time.monotonic()
        answer = client.post("/deployments/churn/v2/models/churn/slow", content=b"{}")
        assert answer.status_code == 404  # not a V2 route: never sent
        answer = client.post("/deployments/churn/predict?slow=1", content=b"{}")
        # The replica takes a second over it: the gateway answered while it still worked.
        slow_seen = [s["path"] for s in _Replica.seen if "slow" in s["path"]]
        slow_answered = [p for p in _Replica.answered if "slow" in p]
    assert answer.status_code == 504, answer.text
    assert answer.json()["error"]["code"] == "upstream_timeout"
    assert len(slow_seen) == 1, slow_seen
    assert slow_answered == [], (
        f"the gateway waited for the slow replica's answer: {slow_answered}, "
        f"took {time.monotonic() - started:.2f} s"
    )
