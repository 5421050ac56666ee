"""Open Inference Protocol (KServe V2) REST: health, metadata, inference, and its errors."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from loopml import __version__
from tests.unit.conftest import MODEL, VERSION, Served, make_app

INFER = f"/v2/models/{MODEL}/infer"
HEX32 = re.compile(r"[0-9a-f]{32}")


def column_tensors(
    frame: pd.DataFrame, datatypes: dict[str, str] | None = None, nested: bool = False
) -> list[dict[str, Any]]:
    """One tensor per column, as KServe's pandas codec sends them."""
    tensors = []
    for name in frame.columns:
        values = [None if isinstance(v, float) and np.isnan(v) else v for v in frame[name].tolist()]
        datatype = (datatypes or {}).get(name, "FP64")
        shape = [len(values), 1] if nested else [len(values)]
        data = [[v] for v in values] if nested else values
        tensors.append({"name": name, "shape": shape, "datatype": datatype, "data": data})
    return tensors


def _outputs(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in body["outputs"]}


def test_health_and_server_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json()["live"] is True
    assert client.get("/v2/health/ready").json()["ready"] is True
    server = client.get("/v2").json()
    assert server["name"] == "loopml"
    assert server["version"] == __version__
    assert server["extensions"] == []


@pytest.mark.parametrize("path", [f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/versions/{VERSION}"])
def test_model_metadata_lists_the_signature(mixed: Served, path: str) -> None:
    with TestClient(make_app(mixed)) as client:
        body = client.get(path).json()

    assert body["name"] == MODEL
    assert body["versions"] == [str(VERSION)]
    assert body["platform"] == "onnxruntime_onnx"
    assert body["inputs"] == [
        {"name": "age years", "datatype": "FP64", "shape": [-1]},
        {"name": "income(k)", "datatype": "FP64", "shape": [-1]},
        {"name": "visits", "datatype": "INT64", "shape": [-1]},
        {"name": "plan", "datatype": "BYTES", "shape": [-1]},
        {"name": "active", "datatype": "BOOL", "shape": [-1]},
    ]
    assert body["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP32", "shape": [-1, 2]},
    ]
    assert body["task"] == "classification"
    assert body["classes"] == ["churn", "stay"]


@pytest.mark.parametrize(
    ("name", "predict", "platform"),
    [("diabetes", "FP32", "onnxruntime_onnx"), ("skops_regressor", "FP64", "sklearn_skops")],
)
def test_regressor_metadata_has_one_output(
    name: str, predict: str, platform: str, request: pytest.FixtureRequest
) -> None:
    served: Served = request.getfixturevalue(name)
    with TestClient(make_app(served)) as client:
        body = client.get(f"/v2/models/{MODEL}").json()

    assert body["outputs"] == [{"name": "predict", "datatype": predict, "shape": [-1]}]
    assert body["platform"] == platform
    assert body["classes"] is None


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/other",
        "/v2/models/other/ready",
        f"/v2/models/{MODEL}/versions/{VERSION + 1}",
        f"/v2/models/{MODEL}/versions/{VERSION + 1}/ready",
        f"/v2/models/{MODEL}/versions/latest",
    ],
)
def test_other_models_and_versions_are_404(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found"
    assert response.headers["x-loopml-error-code"] == "not_found"
    # The Open Inference Protocol's error body: "error" is the message.
    assert f"this server serves model '{MODEL}' version {VERSION}" in body["error"]


@pytest.mark.parametrize(
    "path", [f"/v2/models/{MODEL}/ready", f"/v2/models/{MODEL}/versions/3/ready"]
)
def test_model_ready(client: TestClient, path: str) -> None:
    body = client.get(path).json()

    assert body["name"] == MODEL
    assert body["ready"] is True


@pytest.mark.parametrize("nested", [False, True], ids=["shape-N", "shape-N-1-nested"])
def test_infer_with_one_tensor_per_column_matches_native(
    client: TestClient, cancer: Served, nested: bool
) -> None:
    frame = cancer.frame.iloc[:25]

    response = client.post(INFER, json={"inputs": column_tensors(frame, nested=nested)})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == MODEL
    assert body["model_version"] == str(VERSION)
    outputs = _outputs(body)
    assert outputs["predict"]["datatype"] == "INT64"
    assert outputs["predict"]["shape"] == [25]
    assert outputs["predict"]["data"] == cancer.native.predict(frame).tolist()
    proba = outputs["predict_proba"]
    assert proba["datatype"] == "FP32"
    assert proba["shape"] == [25, 2]
    np.testing.assert_allclose(
        np.reshape(proba["data"], (25, 2)), cancer.native.predict_proba(frame), atol=1e-4
    )
    assert body["id"] == body["inference_id"] == response.headers["x-inference-id"]


@pytest.mark.parametrize("nested", [False, True])
def test_infer_with_one_matrix_matches_native(
    client: TestClient, cancer: Served, nested: bool
) -> None:
    frame = cancer.frame.iloc[:7]
    data = frame.to_numpy().tolist() if nested else frame.to_numpy().ravel().tolist()
    tensor = {"name": "input-0", "shape": [7, 30], "datatype": "FP32", "data": data}

    body = client.post(INFER, json={"inputs": [tensor]}).json()

    assert _outputs(body)["predict"]["data"] == cancer.native.predict(frame).tolist()


def test_infer_on_the_versioned_path(client: TestClient, cancer: Served) -> None:
    frame = cancer.frame.iloc[:3]
    path = f"/v2/models/{MODEL}/versions/{VERSION}/infer"

    body = client.post(path, json={"inputs": column_tensors(frame)}).json()

    assert _outputs(body)["predict"]["data"] == cancer.native.predict(frame).tolist()


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/other/infer",
        f"/v2/models/{MODEL}/versions/{VERSION + 1}/infer",
        "/v2/models/other/versions/3/infer",
    ],
)
def test_infer_on_another_model_or_version_is_404(
    client: TestClient, cancer: Served, path: str
) -> None:
    response = client.post(path, json={"inputs": column_tensors(cancer.frame.iloc[:2])})

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("name", ["mixed", "mixed_skops"])
def test_infer_with_bytes_bool_and_int_tensors(name: str, request: pytest.FixtureRequest) -> None:
    served: Served = request.getfixturevalue(name)
    frame = served.frame.iloc[:30]
    datatypes = {"visits": "INT64", "plan": "BYTES", "active": "BOOL"}
    with TestClient(make_app(served)) as client:
        body = client.post(INFER, json={"inputs": column_tensors(frame, datatypes)}).json()

    outputs = _outputs(body)
    assert outputs["predict"]["datatype"] == "BYTES"
    assert outputs["predict"]["data"] == served.native.predict(frame).tolist()
    expected = "FP32" if served.runtime.format == "onnx" else "FP64"
    assert outputs["predict_proba"]["datatype"] == expected


@pytest.mark.parametrize(("name", "datatype"), [("diabetes", "FP32"), ("skops_regressor", "FP64")])
def test_infer_for_a_regressor(name: str, datatype: str, request: pytest.FixtureRequest) -> None:
    served: Served = request.getfixturevalue(name)
    frame = served.frame.iloc[:12]
    with TestClient(make_app(served)) as client:
        body = client.post(INFER, json={"inputs": column_tensors(frame)}).json()

    (output,) = body["outputs"]
    assert output["name"] == "predict"
    assert output["datatype"] == datatype
    assert output["shape"] == [12]
    np.testing.assert_allclose(output["data"], served.native.predict(frame), rtol=1e-4)


def test_id_and_parameters_are_echoed(client: TestClient, cancer: Served) -> None:
    request = {
        "id": "42",
        "parameters": {"content_type": "pd", "priority": 2},
        "inputs": column_tensors(cancer.frame.iloc[:1]),
    }

    body = client.post(INFER, json=request).json()

    assert body["id"] == "42"
    assert body["parameters"] == {"content_type": "pd", "priority": 2}
    assert HEX32.fullmatch(body["inference_id"])


def test_requested_outputs_only(client: TestClient, cancer: Served) -> None:
    request = {
        "inputs": column_tensors(cancer.frame.iloc[:2]),
        "outputs": [{"name": "predict_proba"}],
    }

    body = client.post(INFER, json=request).json()

    assert [o["name"] for o in body["outputs"]] == ["predict_proba"]


def _bad(frame: pd.DataFrame, change: str) -> dict[str, Any]:
    tensors = column_tensors(frame)
    first = tensors[0]
    request: dict[str, Any] = {"inputs": tensors}
    if change == "bytes-for-float":
        first["datatype"] = "BYTES"
        first["data"] = [str(v) for v in first["data"]]
    elif change == "string-in-fp32":
        first["datatype"] = "FP32"
        first["data"][1] = "oops"
    elif change == "float-in-int64":
        first["datatype"] = "INT64"
    elif change == "wide-shape":
        first["shape"] = [1, 3]
    elif change == "shape-data-mismatch":
        first["shape"] = [5]
        for tensor in tensors[1:]:
            tensor["shape"] = [5]
    elif change == "missing-tensor":
        del tensors[3]
    elif change == "unknown-tensor":
        tensors.append({"name": "extra", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]})
    elif change == "duplicate-tensor":
        tensors.append(dict(first))
    elif change == "unequal-rows":
        first["shape"] = [2]
        first["data"] = first["data"][:2]
    elif change == "bad-datatype":
        first["datatype"] = "FLOAT"
    elif change == "ragged":
        first["shape"] = [3, 1]
        first["data"] = [[1.0], 2.0, [3.0]]
    elif change == "unknown-output":
        request["outputs"] = [{"name": "scores"}]
    elif change == "no-inputs":
        request["inputs"] = []
    elif change == "matrix-wrong-width":
        request["inputs"] = [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
        ]
    return request


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("bytes-for-float", r"'mean radius' is BYTES, which cannot carry a float column; use FP64"),
        ("string-in-fp32", r"'mean radius' is FP32 but element 1 is a string \(oops\)"),
        ("float-in-int64", r"'mean radius' is INT64 but element 0 is a number \(17\.99\)"),
        ("wide-shape", r"'mean radius' has shape \[1, 3\]; a column tensor is \[N\] or \[N, 1\]"),
        ("shape-data-mismatch", r"'mean radius' has shape \[5\] but 3 values"),
        ("missing-tensor", r"missing \['mean area'\], unknown \[\]"),
        ("unknown-tensor", r"missing \[\], unknown \['extra'\]"),
        ("duplicate-tensor", r"input tensor 'mean radius' is given twice"),
        ("unequal-rows", r"input tensors have different numbers of rows"),
        ("bad-datatype", r"inputs\.0\.datatype: Input should be 'BOOL'"),
        ("ragged", r"data mixes nested arrays and values"),
        (
            "unknown-output",
            r"unknown output\(s\) \['scores'\]: this model gives \['predict', 'predict_proba'\]",
        ),
        ("no-inputs", r"inputs: List should have at least 1 item"),
        (
            "matrix-wrong-width",
            r"'input-0' with shape \[1, 4\] is neither a column .* nor an \[N, 30\] matrix",
        ),
    ],
)
def test_bad_tensors_are_a_clear_422(
    client: TestClient, cancer: Served, change: str, message: str
) -> None:
    response = client.post(INFER, json=_bad(cancer.frame.iloc[:3], change))

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert re.search(message, body["error"]), body["error"]
    assert HEX32.fullmatch(body["inference_id"])


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (
            {"name": "plan", "datatype": "FP64", "data": [1.0]},
            r"'plan' is FP64, which cannot carry a string",
        ),
        (
            {"name": "active", "datatype": "BOOL", "data": [1]},
            r"'active' is BOOL but element 0 is a number",
        ),
        (
            {"name": "active", "datatype": "INT8", "data": [3]},
            r"column 'active' \(boolean\): row 0 has 3",
        ),
        (
            {"name": "active", "datatype": "FP32", "data": [0.5]},
            r"row 0 has 0\.5; only true/false or 0/1",
        ),
        (
            {"name": "visits", "datatype": "FP64", "data": [1.5]},
            r"column 'visits' \(integer\): row 0 has 1\.5",
        ),
        (
            {"name": "visits", "datatype": "INT64", "data": [None]},
            r"'visits' is INT64 but element 0 is null",
        ),
        # Out of the declared datatype's range: refused, never wrapped (issue 16).
        (
            {"name": "visits", "datatype": "UINT8", "data": [300]},
            r"'visits' is UINT8 but element 0 is 300, outside the range UINT8 can hold \(0 to 25",
        ),
        (
            {"name": "visits", "datatype": "INT8", "data": [-1000]},
            r"'visits' is INT8 but element 0 is -1000, outside the range",
        ),
        (
            {"name": "visits", "datatype": "UINT64", "data": [-1]},
            r"'visits' is UINT64 but element 0 is -1, outside",
        ),
        (
            {"name": "visits", "datatype": "INT64", "data": [2**63]},
            r"'visits' is INT64 but element 0 is 9223372036854775808, outside",
        ),
        (
            {"name": "age years", "datatype": "FP16", "data": [70000.0]},
            r"'age years' is FP16 but element 0 is 70000.0, outside",
        ),
    ],
)
def test_typed_column_tensors_are_checked(
    mixed: Served, tensor: dict[str, Any], message: str
) -> None:
    datatypes = {"plan": "BYTES", "active": "BOOL", "visits": "INT64"}
    tensors = [
        t for t in column_tensors(mixed.frame.iloc[:1], datatypes) if t["name"] != tensor["name"]
    ]
    tensors.append({**tensor, "shape": [1]})
    with TestClient(make_app(mixed)) as client:
        response = client.post(INFER, json={"inputs": tensors})

    assert response.status_code == 422, response.text
    assert re.search(message, response.json()["error"]), response.text


def test_matrix_is_refused_for_models_with_string_columns(mixed: Served) -> None:
    tensor = {"name": "input-0", "shape": [1, 5], "datatype": "FP64", "data": [1, 2, 3, 4, 5]}
    with TestClient(make_app(mixed)) as client:
        response = client.post(INFER, json={"inputs": [tensor]})

    assert response.status_code == 422
    assert "string columns ['plan']: send one tensor per column" in response.text


def test_too_many_rows_is_422_before_reading_the_data(cancer: Served) -> None:
    with TestClient(make_app(cancer, max_rows=2)) as client:
        response = client.post(INFER, json={"inputs": column_tensors(cancer.frame.iloc[:3])})

    assert response.status_code == 422
    assert "holds 3 rows, more than the limit of 2" in response.json()["error"]


def test_binary_tensor_extension_is_415(client: TestClient) -> None:
    response = client.post(
        INFER,
        content=b'{"inputs": []}',
        headers={"content-type": "application/json", "Inference-Header-Content-Length": "14"},
    )

    assert response.status_code == 415
    assert "binary tensor data extension is not supported" in response.json()["error"]


@pytest.mark.parametrize("rows", [1, 25])
@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_every_form_of_the_same_rows_gets_the_same_answer(
    client: TestClient, cancer: Served, rows: int, datatype: str
) -> None:
    frame = cancer.frame.iloc[:rows].astype("float32").astype("float64")
    matrix = {
        "name": "input-0",
        "shape": [rows, frame.shape[1]],
        "datatype": datatype,
        "data": frame.to_numpy().ravel().tolist(),
    }
    columns = column_tensors(frame, dict.fromkeys(frame.columns, datatype))
    mixed = column_tensors(frame, {frame.columns[1]: "FP32", frame.columns[2]: "FP16"})
    forms = {
        "matrix": [matrix],
        "columns": columns,
        "columns, another order": columns[::-1],
        "columns, [N, 1] nested": column_tensors(frame, nested=True),
        "columns, mixed datatypes": mixed,
    }

    answers = {
        form: client.post(INFER, json={"id": "same", "inputs": inputs})
        for form, inputs in forms.items()
    }

    assert {form: a.status_code for form, a in answers.items()} == dict.fromkeys(forms, 200)
    outputs = {form: a.json()["outputs"] for form, a in answers.items()}
    assert all(o == outputs["matrix"] for o in outputs.values()), outputs
    predicted = _outputs(answers["matrix"].json())["predict"]["data"]
    assert predicted == cancer.native.predict(frame).tolist()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("reordered-and-twice", r"input tensor 'mean radius' is given twice"),
        ("reordered-and-missing", r"missing \['mean radius'\], unknown \[\]"),
        ("reordered-unequal-rows", r"different numbers of rows \{'worst fractal dimension': 1"),
        ("one-in-int8-out-of-range", r"'mean area' is INT8 but element 0 is .*, outside"),
        ("one-in-bool", r"'mean area' is BOOL, which cannot carry a float column; use FP64"),
        ("null-in-int64", r"'mean radius' is INT64 but element 0 is null"),
        ("nested-object", r"'mean radius' is FP64 but element 0 is an object"),
        ("unhashable-datatype", r"inputs\.0\.datatype: Input should be 'BOOL'"),
        ("nested-shape", r"inputs\.0\.shape\.0: Input should be a valid integer"),
    ],
)
def test_hostile_column_tensors_are_a_clear_422(
    client: TestClient, cancer: Served, change: str, message: str
) -> None:
    tensors = column_tensors(cancer.frame.iloc[:1])
    first, area = tensors[0], tensors[3]
    if change == "reordered-and-twice":
        tensors = [*tensors[::-1], dict(first)]
    elif change == "reordered-and-missing":
        tensors = tensors[:0:-1]
    elif change == "reordered-unequal-rows":
        tensors = tensors[::-1]
        first.update(shape=[2], data=first["data"] * 2)
    elif change == "one-in-int8-out-of-range":
        area.update(datatype="INT8", data=[int(area["data"][0])])
    elif change == "one-in-bool":
        area.update(datatype="BOOL", data=[True])
    elif change == "null-in-int64":
        first.update(datatype="INT64", data=[None])
    elif change == "nested-object":
        first["data"] = [{"value": 1.0}]
    elif change == "unhashable-datatype":
        first["datatype"] = ["FP64"]
    elif change == "nested-shape":
        first["shape"] = [[1]]

    response = client.post(INFER, json={"inputs": tensors})

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert re.search(message, response.json()["error"]), response.json()["error"]
