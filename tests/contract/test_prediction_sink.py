"""The one contract every ``PredictionSink`` passes: the platform's own log (``PredictionLog``
over a real record batcher) and a replica's ``HttpPredictionSink`` posting to a real platform
served by uvicorn. Whatever the sink, the same records become the same rows, and ``record``
never waits on storage: a burst fed while the catalog is locked against every writer returns,
and lands once it is unlocked."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from loopml.core.predictions import PREDICTION_COLUMNS
from loopml.data import lake
from loopml.data.records import RecordBatcher
from loopml.platform.startup import build_context
from loopml.predictions.http_sink import HttpPredictionSink
from loopml.predictions.intake import PredictionSink
from loopml.predictions.log import PredictionLog
from loopml.settings import Settings
from tests.unit.conftest import DEPLOYMENT, Served, mixed  # noqa: F401 - a fixture
from tests.unit.predictions.test_predlog_http import make_record, serve_platform

TABLE = "churn_prod__predictions"
Rows = list[dict[str, Any]]


@dataclass
class Harness:
    """Runs ``feed`` against a fresh sink of one kind, closes it, and returns the rows of the
    deployment's prediction table; ``db`` is the SQLite catalog the rows are committed to."""

    name: str
    run: Callable[[Callable[[PredictionSink], None]], Rows]
    db: Path


def _inprocess(tmp_path: Path) -> Harness:
    ctx = build_context(Settings(home=tmp_path / "home"))
    ctx.store.upgrade()

    def run(feed: Callable[[PredictionSink], None]) -> Rows:
        async def main() -> None:
            batcher = RecordBatcher(ctx.store, ctx.artifacts, ctx.settings.lake)
            log = PredictionLog(batcher, flush_ms=20)
            try:
                feed(log.sink("default", role="primary"))
            finally:
                await log.close()
                await batcher.close()

        asyncio.run(main())
        table = lake.read_dataset(ctx.store, ctx.artifacts, "default", TABLE).to_table()
        return list(table.to_pylist())

    return Harness("in-process", run, tmp_path / "home" / "loopml.db")


def _http(platform_url: str, sql: Callable[[str], Rows], db: Path) -> Harness:
    def run(feed: Callable[[PredictionSink], None]) -> Rows:
        sink = HttpPredictionSink(platform_url, "default", DEPLOYMENT, role="primary", flush_ms=20)
        try:
            feed(sink)
        finally:
            stats = sink.close(timeout_s=60)
        assert stats.pending == 0
        return sql(f"SELECT * FROM {TABLE}")

    return Harness("http", run, db)


@pytest.fixture(params=["in-process", "http"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "in-process":
        yield _inprocess(tmp_path)
        return
    with serve_platform(tmp_path / "platform") as platform:
        yield _http(platform.url, platform.sql, tmp_path / "platform" / "loopml.db")


def _ordered(rows: Rows) -> Rows:
    return sorted(rows, key=lambda r: (r["inference_id"], r["row_index"]))


def test_each_record_becomes_its_rows_once_with_inputs_and_predictions(
    harness: Harness,
    mixed: Served,  # noqa: F811 - the imported fixture
) -> None:
    records = [
        make_record(mixed, slice(0, 4), "req-a"),
        make_record(mixed, slice(4, 5), "req-b"),
        make_record(mixed, slice(5, 8), "req-c"),
    ]

    def feed(sink: PredictionSink) -> None:
        for record in records:
            sink.record(record)

    rows = _ordered(harness.run(feed))

    assert [(r["inference_id"], r["row_index"]) for r in rows] == [
        *(("req-a", i) for i in range(4)),
        ("req-b", 0),
        *(("req-c", i) for i in range(3)),
    ]
    assert [orjson.loads(r["inputs"]) for r in rows] == mixed.records(slice(0, 8))
    expected = mixed.native.predict(mixed.frame.iloc[:8]).tolist()
    by_id = {"req-a": 0, "req-b": 4, "req-c": 5}
    assert [r["prediction"] for r in rows] == [
        expected[by_id[r["inference_id"]] + r["row_index"]] for r in rows
    ]
    assert {r["role"] for r in rows} == {"primary"}
    assert {r["deployment"] for r in rows} == {DEPLOYMENT}
    assert set(rows[0]) == {c.name for c in PREDICTION_COLUMNS}


HOLD_S = 20.0
"""Longest the catalog stays locked: a sink that waits on storage ends its feed only after."""


@contextmanager
def _catalog_locked(db: Path) -> Iterator[threading.Event]:
    """Hold the catalog's write lock (no table commit can happen) until the block ends or
    ``HOLD_S`` have passed; the event yielded is set once it is let go."""
    assert db.exists(), db
    connection = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    connection.execute("BEGIN EXCLUSIVE")
    released, guard = threading.Event(), threading.Lock()

    def release() -> None:
        with guard:
            if not released.is_set():
                connection.execute("ROLLBACK")
                released.set()

    timer = threading.Timer(HOLD_S, release)
    timer.start()
    try:
        yield released
    finally:
        timer.cancel()
        release()
        connection.close()


def test_record_never_waits_on_storage_and_a_burst_lands_whole(
    harness: Harness,
    mixed: Served,  # noqa: F811 - the imported fixture
) -> None:
    # Not a clock bound on each call (a loaded machine once stalled one queue append for a
    # second): the whole burst is fed while no commit can happen. A sink that wrote or
    # posted inline would wait out the lock, or fail, or lose the rows; one that queues
    # returns while the catalog is still locked, and its rows land once it is let go.
    one = make_record(mixed, slice(0, 1), "x")
    burst = [dataclasses.replace(one, inference_id=f"burst-{i:05d}") for i in range(1500)]
    fed_while_locked = False

    def feed(sink: PredictionSink) -> None:
        nonlocal fed_while_locked
        with _catalog_locked(harness.db) as released:
            for record in burst:
                sink.record(record)
            fed_while_locked = not released.is_set()

    rows = harness.run(feed)

    assert fed_while_locked, f"{harness.name}: the feed ended only once storage was let go"
    assert sorted(r["inference_id"] for r in rows) == [r.inference_id for r in burst]
