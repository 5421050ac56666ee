"""The platform's own prediction log: ``PredictionLog`` appending through a real record
batcher, fed real answers of a real model server (the gateway's shadow hook) and records."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from starlette.testclient import TestClient

from loopml.core.deployments import prediction_table
from loopml.core.predictions import PREDICTION_COLUMNS
from loopml.data import lake
from loopml.data.records import RecordBatcher
from loopml.faces.context import AppContext
from loopml.platform.startup import build_context
from loopml.predictions.intake import Answer, PredictionSink
from loopml.predictions.log import BUILD_AHEAD, LogStats, PredictionLog
from loopml.settings import Settings
from tests.unit.conftest import DEPLOYMENT, MODEL, VERSION, Served, make_app
from tests.unit.predictions.test_predlog_http import make_record

TABLE = "churn_prod__predictions"


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    home = tmp_path / "home"
    context = build_context(
        Settings(home=home, database={"url": f"sqlite:///{tmp_path / 'loopml.db'}"})
    )
    context.store.upgrade()
    yield context
    context.store.dispose()


def _run(
    ctx: AppContext, body: Callable[[PredictionLog], Awaitable[Any]], **options: Any
) -> LogStats:
    """Run ``body`` with a log over a real batcher in an event loop; close both; the log's
    counts once closed."""

    async def main() -> LogStats:
        batcher = RecordBatcher(ctx.store, ctx.artifacts, ctx.settings.lake)
        log = PredictionLog(batcher, **options)
        try:
            await body(log)
        finally:
            stats = await log.close()
            await batcher.close()
        return stats

    return asyncio.run(main())


def _rows(ctx: AppContext) -> list[dict[str, Any]]:
    table: pa.Table = lake.read_dataset(ctx.store, ctx.artifacts, "default", TABLE).to_table()
    return sorted(table.to_pylist(), key=lambda r: (r["inference_id"], r["row_index"]))


def _answer(path: str, request: bytes, response: Any, *, inference_id: str) -> Answer:
    return Answer(
        project="default",
        deployment=DEPLOYMENT,
        revision=2,
        model=MODEL,
        version=VERSION,
        role="shadow",
        inference_id=inference_id,
        path=path,
        status=response.status_code,
        latency_s=0.003,
        arrived=time.time() - 0.003,
        request_body=request,
        body=response.content,
    )


def _shadow_answers(served: Served) -> list[Answer]:
    """Real answers of a real model server: /predict (records), V2 column tensors, a V2
    matrix, and an error."""
    instances = served.records(slice(0, 3))
    names = served.runtime.input_names
    columns = {
        "inputs": [
            {"name": n, "shape": [2], "datatype": "FP64", "data": [r[n] for r in instances[:2]]}
            for n in names
        ]
    }
    matrix = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [1, len(names)],
                "datatype": "FP64",
                "data": [instances[2][n] for n in names],
            }
        ]
    }
    infer = f"/v2/models/{MODEL}/infer"
    calls = [
        ("/predict", {"instances": instances}, "by-predict"),
        (infer, columns, "by-v2-columns"),
        (infer, matrix, "by-v2-matrix"),
        ("/predict", {"instances": [{}]}, "an-error"),
    ]
    answers = []
    with TestClient(make_app(served), base_url="http://127.0.0.1") as client:
        for path, body, inference_id in calls:
            raw = orjson.dumps(body)
            response = client.post(path, content=raw, headers={"content-type": "application/json"})
            answers.append(_answer(path, raw, response, inference_id=inference_id))
    return answers


def test_shadow_answers_become_rows_with_role_shadow(cancer: Served, ctx: AppContext) -> None:
    answers = _shadow_answers(cancer)
    answers.append(dataclasses.replace(answers[0], inference_id="unreadable", body=b"{not json"))

    async def body(log: PredictionLog) -> None:
        for answer in answers:
            log.log_answer(answer)

    stats = _run(ctx, body, flush_ms=600_000)

    assert (stats.appended, stats.skipped, stats.dropped, stats.refused) == (6, 2, 0, 0)
    rows = _rows(ctx)
    instances = cancer.records(slice(0, 3))
    expected = cancer.native.predict(cancer.frame.iloc[:3]).tolist()
    proba = cancer.native.predict_proba(cancer.frame.iloc[:3])
    by_id = {(r["inference_id"], r["row_index"]): r for r in rows}
    assert sorted(by_id) == [
        ("by-predict", 0),
        ("by-predict", 1),
        ("by-predict", 2),
        ("by-v2-columns", 0),
        ("by-v2-columns", 1),
        ("by-v2-matrix", 0),
    ]
    for i in range(3):
        row = by_id[("by-predict", i)]
        assert orjson.loads(row["inputs"]) == instances[i]
        assert row["prediction"] == str(expected[i])
        assert row["prediction_value"] == float(expected[i])
        assert orjson.loads(row["probabilities"]) == pytest.approx(
            {"0": proba[i][0], "1": proba[i][1]}, abs=1e-6
        )
        assert (row["protocol"], row["role"], row["model_version"]) == ("predict", "shadow", 3)
    for i in range(2):
        row = by_id[("by-v2-columns", i)]
        assert orjson.loads(row["inputs"]) == instances[i]
        assert (row["prediction"], row["protocol"]) == (str(expected[i]), "v2")
        # V2 answers do not name the classes: the probabilities are in class order.
        assert orjson.loads(row["probabilities"]) == pytest.approx(list(proba[i]), abs=1e-6)
    matrix_row = by_id[("by-v2-matrix", 0)]
    names = cancer.runtime.input_names
    assert orjson.loads(matrix_row["inputs"]) == [instances[2][n] for n in names]
    assert matrix_row["prediction"] == str(expected[2])
    assert {r["latency_ms"] for r in rows} == {3.0}


def test_every_answer_is_logged_with_its_own_role(cancer: Served, ctx: AppContext) -> None:
    shadow = _shadow_answers(cancer)[0]
    answers = [
        dataclasses.replace(shadow, inference_id=f"as-{role}", role=role, revision=number)
        for number, role in enumerate(("primary", "canary", "shadow"), start=1)
    ]

    async def body(log: PredictionLog) -> None:
        for answer in answers:
            log.log_answer(answer)

    stats = _run(ctx, body, flush_ms=600_000)

    assert (stats.appended, stats.skipped) == (9, 0)
    roles = {(r["inference_id"], r["role"]) for r in _rows(ctx)}
    assert roles == {("as-primary", "primary"), ("as-canary", "canary"), ("as-shadow", "shadow")}


def test_an_in_platform_sink_logs_records_like_a_replica(mixed: Served, ctx: AppContext) -> None:
    async def body(log: PredictionLog) -> None:
        sink: PredictionSink = log.sink("default", role="primary")
        sink.record(make_record(mixed, slice(0, 5), "first"))
        sink.record(make_record(mixed, slice(5, 6), "second"))

    stats = _run(ctx, body)

    assert (stats.appended, stats.pending) == (6, 0)
    rows = _rows(ctx)
    assert [(r["inference_id"], r["row_index"]) for r in rows] == [
        ("first", 0),
        ("first", 1),
        ("first", 2),
        ("first", 3),
        ("first", 4),
        ("second", 0),
    ]
    sent = mixed.records(slice(0, 6))
    assert [orjson.loads(r["inputs"]) for r in rows] == sent
    assert [r["prediction"] for r in rows] == mixed.native.predict(mixed.frame.iloc[:6]).tolist()
    assert {r["role"] for r in rows} == {"primary"}
    table = lake.get_table(ctx.store, ctx.artifacts, "default", TABLE)
    assert [(c.name, c.type) for c in table.columns] == [
        (c.name, c.type) for c in PREDICTION_COLUMNS
    ]


def test_a_full_queue_drops_and_close_appends_the_rest(cancer: Served, ctx: AppContext) -> None:
    record = make_record(cancer, slice(0, 10), "x")

    async def body(log: PredictionLog) -> None:
        sink = log.sink("default")
        for i in range(30):
            sink.record(make_copy(record, f"r{i}"))
        # Only queued, the overflow dropped rather than waited for room: nothing written yet.
        assert (log.stats.pending, log.stats.dropped) == (200, 100), log.stats
        assert not lake.list_tables(ctx.store, "default")

    stats = _run(ctx, body, max_queue=200, flush_ms=600_000, max_batch=10_000)

    assert (stats.appended, stats.dropped) == (200, 100)
    assert len({r["inference_id"] for r in _rows(ctx)}) == 20


def test_entries_built_ahead_in_pieces_make_one_append_in_order(
    cancer: Served, ctx: AppContext
) -> None:
    """Over twice ``BUILD_AHEAD`` entries for two deployments before one append: they go to
    the log's thread in pieces as they come, and the append holds each row once, in its
    deployment's table."""
    mine = make_record(cancer, slice(0, 1), "x")
    other = make_record(cancer, slice(0, 1), "x", deployment="other")
    count = 2 * BUILD_AHEAD + 7

    async def body(log: PredictionLog) -> None:
        sink = log.sink("default")
        for i in range(count):
            sink.record(make_copy(other if i % 3 == 0 else mine, f"r{i:04d}"))
        assert not lake.list_tables(ctx.store, "default")  # built ahead, not yet appended

    stats = _run(ctx, body, flush_ms=600_000, max_batch=100_000)

    assert (stats.appended, stats.dropped, stats.pending) == (count, 0, 0)

    def ids(table: str) -> list[str]:
        found = lake.read_dataset(ctx.store, ctx.artifacts, "default", table).to_table()
        return sorted(found.column("inference_id").to_pylist())

    assert ids(TABLE) == [f"r{i:04d}" for i in range(count) if i % 3]
    assert ids(prediction_table("other")) == [f"r{i:04d}" for i in range(0, count, 3)]


def make_copy(record: Any, inference_id: str) -> Any:
    fields = {name: getattr(record, name) for name in record.__slots__}
    return type(record)(**{**fields, "inference_id": inference_id})


def test_bad_sink_arguments_are_refused(ctx: AppContext) -> None:
    from loopml.core.errors import ValidationError

    async def body(log: PredictionLog) -> None:
        with pytest.raises(ValidationError, match="role must be one of"):
            log.sink("default", role="boss")
        with pytest.raises(ValidationError, match="invalid project name"):
            log.sink("Not A Project")

    _run(ctx, body)
