"""Where the prediction log's rows are made (issue 34): the CPU each intake costs per answer,
side by side in one run, for one served row of 8 numeric columns with class probabilities.

- **the log's intake today** (``predictions._rows.answer_rows``): the platform's log worker
  thread decodes the request and answer bytes a gateway carried, parses them with the
  protocol's parser (``core.inference``), and makes the rows; off the serving path;
- **of which the parse**: ``orjson.loads`` of both bodies and ``parse_predict`` /
  ``parse_request``, the part a replica already did in its own process;
- **the replica logging itself** (the Kubernetes path, ``record_rows`` + ``to_ndjson`` in the
  replica's sink, then the platform's record ingest decoding the NDJSON): what carrying the
  replica's parsed columns to the log would cost instead.

The Arrow conversion and the table commit are the same on both paths and are not counted.
Run ``python bench/prediction_log.py [--n N]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import numpy as np
import orjson

from loopml.core.inference import parse_predict, parse_request
from loopml.predictions import _rows
from loopml.predictions.intake import Answer, PredictionRecord

COLUMNS = [f"f{i}" for i in range(8)]


def _answers() -> tuple[Answer, Answer, PredictionRecord]:
    row = {c: i * 0.5 for i, c in enumerate(COLUMNS)}
    predict = Answer(
        project="p",
        deployment="d",
        revision=1,
        model="m",
        version=1,
        role="primary",
        inference_id="0" * 32,
        path="/predict",
        status=200,
        latency_s=0.001,
        arrived=time.time(),
        request_body=orjson.dumps({"instances": [row]}),
        body=orjson.dumps({"predictions": [1], "probabilities": [[0.2, 0.8]], "classes": [0, 1]}),
    )
    v2_request = {"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP64", "data": [0.5] * 8}]}
    v2_answer = {
        "model_name": "m",
        "outputs": [
            {"name": "predict", "shape": [1], "datatype": "INT64", "data": [1]},
            {"name": "predict_proba", "shape": [1, 2], "datatype": "FP64", "data": [0.2, 0.8]},
        ],
    }
    v2 = dataclasses.replace(
        predict,
        path="/v2/models/m/infer",
        request_body=orjson.dumps(v2_request),
        body=orjson.dumps(v2_answer),
    )
    record = PredictionRecord(
        inference_id="0" * 32,
        deployment="d",
        model="m",
        version=1,
        timestamp=time.time(),
        latency_s=0.001,
        protocol="predict",
        inputs={c: np.array([v]) for c, v in row.items()},
        predictions=np.array([1]),
        probabilities=np.array([[0.2, 0.8]]),
        classes=[0, 1],
    )
    return predict, v2, record


def _cpu_us(work: Callable[[], object], n: int) -> float:
    work()
    start = time.process_time()
    for _ in range(n):
        work()
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="answers per figure")
    n = parser.parse_args().n
    predict, v2, record = _answers()
    ndjson = _rows.to_ndjson(_rows.record_rows(record, "primary"))

    def replica_logs_itself() -> object:
        sent = _rows.to_ndjson(_rows.record_rows(record, "primary"))
        return [orjson.loads(line) for line in sent.split(b"\n")]

    figures = [
        ("the log's intake, /predict (decode, parse, rows)", lambda: _rows.answer_rows(predict)),
        ("  of which the parse", lambda: parse_predict(orjson.loads(predict.request_body))),
        ("  of which decoding the answer", lambda: orjson.loads(predict.body)),
        ("the log's intake, V2 infer (decode, parse, rows)", lambda: _rows.answer_rows(v2)),
        ("  of which the parse", lambda: parse_request(orjson.loads(v2.request_body))),
        ("the replica logging itself (rows, NDJSON, ingest)", replica_logs_itself),
        ("  of which the replica's part", lambda: _rows.record_rows(record, "primary")),
        ("  of which the ingest's decode", lambda: orjson.loads(ndjson)),
    ]
    print(f"{'CPU per answer, one row':52s} {'µs':>7s}")
    for name, work in figures:
        print(f"{name:52s} {_cpu_us(work, n):7.1f}")


if __name__ == "__main__":
    main()
