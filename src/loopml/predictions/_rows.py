"""Rows of the prediction log (``loopml.core.predictions.PREDICTION_COLUMNS``), built from
what the model server recorded (``record_rows``) or from an answer a gateway saw
(``answer_rows``), and written as NDJSON (for record ingest over HTTP) or Arrow (in-process).

This runs off the hot path (the sink's thread, a worker thread): the model server only
enqueues its columnar ``PredictionRecord``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from loopml.core.errors import ValidationError
from loopml.core.inference import (
    PREDICT,
    PREDICT_PROBA,
    InferenceRequest,
    InputTensors,
    PredictRequest,
    flat_tensor,
    output_tensors,
    parse_predict,
    parse_request,
)
from loopml.core.predictions import PREDICTION_COLUMNS, canonical_text, numeric_value
from loopml.predictions.intake import PredictionRecord

if TYPE_CHECKING:
    from loopml.predictions.intake import Answer

Row = dict[str, Any]
PREDICTION_SCHEMA = pa.schema(
    [pa.field(c.name, pa.type_for_alias(c.type), c.nullable) for c in PREDICTION_COLUMNS]
)


def utc(timestamp: float) -> datetime:
    """Unix seconds as a naive UTC datetime (the lake's ``timestamp[us]``)."""
    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None)


def record_rows(record: PredictionRecord, role: str | None) -> list[Row]:
    """One row per predicted row of ``record``."""
    rows = record.rows
    inputs = _input_texts(record.inputs, rows)
    classes = list(record.classes) if record.classes is not None else None
    probabilities = _probability_texts(record.probabilities, classes)
    return _rows(
        inference_id=record.inference_id,
        deployment=record.deployment,
        model=record.model,
        version=record.version,
        role=role,
        ts=utc(record.timestamp),
        latency_ms=record.latency_s * 1000.0,
        protocol=record.protocol,
        inputs=inputs,
        predictions=record.predictions.tolist(),
        probabilities=probabilities,
    )


def _rows(
    *,
    inference_id: str,
    deployment: str,
    model: str,
    version: int,
    role: str | None,
    ts: datetime,
    latency_ms: float,
    protocol: str,
    inputs: Sequence[str | None],
    predictions: Sequence[Any],
    probabilities: Sequence[str | None] | None,
) -> list[Row]:
    out: list[Row] = []
    for index, value in enumerate(predictions):
        scalar = _scalar(value)
        out.append(
            {
                "inference_id": inference_id,
                "row_index": index,
                "deployment": deployment,
                "model": model,
                "model_version": version,
                "role": role,
                "ts": ts,
                "latency_ms": latency_ms,
                "protocol": protocol,
                "inputs": inputs[index] if index < len(inputs) else None,
                "prediction": None if scalar is None else canonical_text(scalar),
                "prediction_value": None if scalar is None else numeric_value(scalar),
                "probabilities": (
                    probabilities[index]
                    if probabilities is not None and index < len(probabilities)
                    else None
                ),
            }
        )
    return out


def _scalar(value: Any) -> bool | int | float | str | None:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return str(value)
    return orjson.dumps(value, default=str).decode()


def _key(value: Any) -> str:
    scalar = _scalar(value)
    return "" if scalar is None else canonical_text(scalar)


def _json_values(array: np.ndarray) -> list[Any]:
    values: list[Any] = array.tolist()
    if array.dtype.kind == "f":
        return [None if v != v else v for v in values]
    return values


def _input_texts(inputs: Mapping[str, np.ndarray], rows: int) -> list[str | None]:
    names = list(inputs)
    if not names:
        return [None] * rows
    columns = [_json_values(inputs[name]) for name in names]
    return [
        orjson.dumps(dict(zip(names, row, strict=True))).decode()
        for row in zip(*columns, strict=True)
    ]


def _probability_texts(
    probabilities: np.ndarray | None, classes: Sequence[Any] | None
) -> list[str | None] | None:
    if probabilities is None:
        return None
    values = np.asarray(probabilities, dtype=np.float64).tolist()
    if classes is None or len(classes) != (len(values[0]) if values else 0):
        return [orjson.dumps(row).decode() for row in values]
    keys = [_key(c) for c in classes]
    return [orjson.dumps(dict(zip(keys, row, strict=True))).decode() for row in values]


def answer_rows(answer: Answer) -> list[Row]:
    """Rows from a revision's answer (``/predict`` or V2 ``/infer``) as a gateway saw it,
    with its role; the request is parsed by the protocol's own parser
    (``loopml.core.inference``), as the replica that answered parsed it.

    Returns:
        The rows; none for an error answer or a body that cannot be read.
    """
    if answer.status != 200:
        return []
    try:
        request = orjson.loads(answer.request_body)
        response = orjson.loads(answer.body)
        if answer.path.endswith("/infer"):
            protocol = "v2"
            parsed = _v2(parse_request(request), response)
        else:
            protocol = "predict"
            parsed = _predict(parse_predict(request), response)
    except (orjson.JSONDecodeError, ValidationError):
        return []
    if parsed is None:
        return []
    inputs, predictions, probabilities = parsed
    return _rows(
        inference_id=answer.inference_id,
        deployment=answer.deployment,
        model=answer.model,
        version=answer.version,
        role=answer.role,
        ts=utc(answer.arrived),
        latency_ms=answer.latency_s * 1000.0,
        protocol=protocol,
        inputs=inputs,
        predictions=predictions,
        probabilities=probabilities,
    )


_Parsed = tuple[list[str | None], list[Any], list[str | None] | None]


def _predict(request: PredictRequest, response: object) -> _Parsed | None:
    instances = request.instances
    predictions = response.get("predictions") if isinstance(response, dict) else None
    if not isinstance(instances, list) or not isinstance(predictions, list):
        return None
    inputs: list[str | None] = [orjson.dumps(row).decode() for row in instances]
    proba = response.get("probabilities") if isinstance(response, dict) else None
    classes = response.get("classes") if isinstance(response, dict) else None
    texts = None
    if isinstance(proba, list) and proba and all(isinstance(r, list) for r in proba):
        texts = _probability_texts(np.asarray(proba, dtype=np.float64), classes)
    return inputs, predictions, texts


def _v2(request: InferenceRequest, response: object) -> _Parsed | None:
    outputs = output_tensors(response)
    predictions = outputs.get(PREDICT)
    if predictions is None:
        return None
    rows = len(predictions)
    proba = outputs.get(PREDICT_PROBA)
    return (
        _v2_inputs(_v2_columns(request.inputs), rows),
        predictions,
        _v2_probabilities(proba, rows),
    )


def _v2_columns(tensors: InputTensors) -> dict[str, list[Any]]:
    """Each tensor's data flat, by name: as given where no tensor is nested (the tensors'
    first values are checked together, as ``flat_tensor`` checks one tensor's)."""
    try:
        nested = list in set(map(type, map(itemgetter(0), tensors.data)))
    except IndexError:  # an empty tensor: flat_tensor reads each one
        nested = True
    if not nested:
        return dict(zip(tensors.names, tensors.data, strict=True))
    return {t.name: flat_tensor(t) for t in tensors}


def _v2_inputs(columns: dict[str, list[Any]], rows: int) -> list[str | None]:
    """Each row's inputs as JSON text: a list for one [N, C] matrix (the model's column order),
    an object for one tensor per column, ``None`` when the shapes do not add up."""
    if len(columns) == 1 and rows and len(next(iter(columns.values()))) != rows:
        flat = next(iter(columns.values()))
        width = len(flat) // rows
        return [orjson.dumps(flat[i * width : (i + 1) * width]).decode() for i in range(rows)]
    if set(map(len, columns.values())) <= {rows}:
        names = list(columns)
        return [
            orjson.dumps(dict(zip(names, row, strict=True))).decode()
            for row in zip(*columns.values(), strict=True)
        ]
    return [None] * rows


def _v2_probabilities(flat: list[Any] | None, rows: int) -> list[str | None] | None:
    if flat is None or not rows:
        return None
    width = len(flat) // rows
    if not (width and width * rows == len(flat) and all(_number(v) for v in flat)):
        return None
    return _probability_texts(np.asarray(flat, dtype=np.float64).reshape(rows, width), None)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def to_ndjson(rows: Sequence[Row]) -> bytes:
    """Rows as NDJSON (timestamps as ISO 8601 text, which the table's types read back)."""
    return b"\n".join(orjson.dumps(row) for row in rows)


def to_arrow(rows: Sequence[Row]) -> pa.Table:
    """Rows as an Arrow table of the prediction log's schema."""
    return pa.Table.from_pylist(list(rows), schema=PREDICTION_SCHEMA)
