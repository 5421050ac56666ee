"""Prediction-log rows from V2 answers as a gateway saw them: every form of the same rows
(one tensor per column, in any order, flat or ``[N, 1]`` nested) logs the same inputs."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson
from starlette.testclient import TestClient

from loopml.predictions._rows import answer_rows
from loopml.predictions.intake import Answer
from tests.unit.conftest import MODEL, VERSION, Served, make_app

INFER = f"/v2/models/{MODEL}/infer"


def _answer(client: TestClient, inputs: list[dict[str, Any]], inference_id: str) -> Answer:
    request = orjson.dumps({"inputs": inputs})
    response = client.post(INFER, content=request, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    return Answer(
        "default", "churn", 1, MODEL, VERSION, "primary", inference_id, INFER, 200, 0.002,
        time.time(), request, response.content,
    )  # fmt: skip


def test_column_tensors_in_any_order_or_nesting_log_the_same_inputs(cancer: Served) -> None:
    frame = cancer.frame.iloc[:3]
    flat = [
        {"name": c, "shape": [3], "datatype": "FP64", "data": frame[c].tolist()}
        for c in frame.columns
    ]
    nested = [{**t, "shape": [3, 1], "data": [[v] for v in t["data"]]} for t in flat]
    forms = {"flat": flat, "reordered": flat[::-1], "nested": nested}
    with TestClient(make_app(cancer)) as client:
        rows = {form: answer_rows(_answer(client, t, form)) for form, t in forms.items()}

    records = cancer.records(slice(0, 3))
    for form, logged in rows.items():
        assert [orjson.loads(r["inputs"]) for r in logged] == records, form
        assert [r["row_index"] for r in logged] == [0, 1, 2]
        assert [r["prediction"] for r in logged] == [r["prediction"] for r in rows["flat"]]
    reordered = orjson.loads(rows["reordered"][0]["inputs"])
    assert list(reordered) == list(frame.columns)[::-1]  # as the request named them


def test_a_body_that_mixes_nesting_logs_no_rows(cancer: Served) -> None:
    with TestClient(make_app(cancer)) as client:
        good = _answer(client, [{"name": "input-0", "shape": [1, 30], "datatype": "FP64",
                                 "data": cancer.frame.iloc[0].tolist()}], "good")  # fmt: skip
    tensors = [
        {"name": c, "shape": [1], "datatype": "FP64", "data": [1.0]} for c in cancer.frame.columns
    ]
    tensors[1]["data"] = [[1.0], 2.0]
    odd = dataclasses.replace(good, request_body=orjson.dumps({"inputs": tensors}))

    assert len(answer_rows(good)) == 1
    assert answer_rows(odd) == []  # a replica refuses it too: nothing to read
