"""The streams on the platform's ``/metrics``: a stream consumes real broker messages (a
poison one among them), then the API app, in-process, is scraped and parsed."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from loopml.data.streams import service
from loopml.data.streams.consumer import ConsumerOptions, StreamConsumer
from loopml.platform import create_api_app
from loopml.settings import LakeSettings, Settings
from loopml.wiring import open_artifact_store
from tests.brokers import Broker

SENT = 30
WATCH_S = 100.0
"""Past this, a consume that has not ended prints where each of its tasks waits: the pytest
timeout (120 s) shows threads, and an event loop's coroutines are invisible in those."""


def _print_task_stacks() -> None:
    print(f"consume() still running after {WATCH_S:g} s; its tasks:", file=sys.stderr)
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path / "home",
        database={"url": database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        server={"streams": False},  # the test runs the consumer itself
        monitor={"enabled": False},
    )
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as client:
        yield client


def _scrape(app: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = app.get("/metrics")
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name.startswith("loopml_stream_")
    }


def test_a_streams_figures_are_on_metrics(app: TestClient, broker: Broker) -> None:
    ctx = app.app.state.running.context  # type: ignore[attr-defined]
    app.post("/api/v1/projects", json={"name": "p"}).raise_for_status()
    stream = service.create(
        ctx.store,
        "p",
        "s1",
        source=broker.source,
        subject=broker.subject,
        table="events",
        batch_ms=50,
        redeliver_s=5,
        actor="test",
    )
    labels = (("project", "p"), ("source", broker.kind), ("stream", "s1"), ("table", "events"))
    before = _scrape(app)
    assert before[("loopml_stream_messages_total", labels)] == 0
    assert before[("loopml_stream_status", tuple(sorted((*labels, ("status", "stopped")))))] == 1
    assert ("loopml_stream_lag", labels) not in before  # not measured yet: absent, not 0

    broker.publish([orjson.dumps({"id": i}) for i in range(SENT)] + [b"poison"])

    async def consume() -> None:
        watchdog = asyncio.get_running_loop().call_later(WATCH_S, _print_task_stacks)
        try:
            await consume_and_scrape()
        finally:
            watchdog.cancel()

    async def consume_and_scrape() -> None:
        consumer = StreamConsumer(
            ctx.store,
            open_artifact_store(ctx.settings),
            LakeSettings(),
            stream,
            options=ConsumerOptions(report_every_s=0.2),
        )
        task = asyncio.create_task(consumer.run())
        deadline = time.monotonic() + 60
        while consumer.committed < SENT + 1 and time.monotonic() < deadline:
            assert not task.done(), task
            await asyncio.sleep(0.05)
        if consumer.committed < SENT + 1:  # say why, and stop the consumer first
            consumer.stop()
            await asyncio.wait_for(task, 30)
            raise AssertionError(f"{consumer.committed} of {SENT + 1} in 60 s: {consumer.stats}")
        await asyncio.sleep(1.1)  # a report after the last commit, past the scrape cache
        scraped.update(_scrape(app))
        consumer.stop()
        await task

    scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    consumed_from = time.time()
    asyncio.run(consume())
    consumed_to = time.time()
    assert scraped[("loopml_stream_messages_total", labels)] == SENT + 1
    assert scraped[("loopml_stream_dead_letters_total", labels)] == 1
    assert scraped[("loopml_stream_commits_total", labels)] >= 1
    assert scraped[("loopml_stream_errors_total", labels)] == 0
    assert scraped[("loopml_stream_lag", labels)] == 0  # measured at each report
    assert scraped[("loopml_stream_rate", labels)] >= 0
    assert scraped[("loopml_stream_paused", labels)] == 0
    running = tuple(sorted((*labels, ("status", "running"))))
    assert scraped[("loopml_stream_status", running)] == 1
    # The consumer's last report, made while it ran (a second either side for the stored
    # time's rounding): two readings of the clock around it, not a bound on how long it took.
    heartbeat_seconds = scraped[("loopml_stream_heartbeat_timestamp_seconds", labels)]
    assert consumed_from - 1 <= heartbeat_seconds <= consumed_to + 1, (consumed_from, consumed_to)
    time.sleep(1.1)  # past the collector's cache
    after = _scrape(app)
    assert after[("loopml_stream_status", tuple(sorted((*labels, ("status", "stopped")))))] == 1
