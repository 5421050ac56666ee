"""``loopml streams`` against a real ``loopml up`` and the real NATS (and Kafka, on Tansu): the
server's supervisor runs the consumer, messages published land, a poison one is a dead
letter; the figures are on /metrics; the stream applied from YAML is unchanged, then updated
and restarted."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.brokers import Broker, jetstream_consumers
from tests.waiting import eventually

from .conftest import RunningServer

pytestmark = [pytest.mark.e2e, pytest.mark.nats]


@pytest.fixture
def nats_broker(nats_server: str) -> Broker:
    made = Broker("nats", nats_server, f"e2e{time.time_ns() % 10**9}")
    made.create()
    yield made  # type: ignore[misc]
    made.remove()


def _shown_once(
    server: RunningServer, done: Callable[[dict[str, Any]], bool], what: str, timeout_s: float
) -> dict[str, Any]:
    """``loopml streams show orders-in --json`` once ``done`` holds for it."""

    def shown() -> dict[str, Any]:
        found: dict[str, Any] = json.loads(
            server.cli("streams", "show", "orders-in", "--json").stdout
        )
        return found

    return eventually(
        lambda: done(found := shown()) and found, timeout_s, what, interval_s=0.5, describe=shown
    )


def _restarted(shown: dict[str, Any]) -> bool:
    """A heartbeat well after the stream's change: the restarted consumer's."""
    changed = datetime.fromisoformat(shown["updated_at"])
    beat = shown["stats"]["heartbeat_at"]
    return beat is not None and datetime.fromisoformat(beat) > changed + timedelta(seconds=1)


def test_a_stream_created_with_the_cli_fills_its_table(
    server: RunningServer, nats_broker: Broker, tmp_path: Path
) -> None:
    made = server.cli(
        "streams",
        "create",
        "orders-in",
        "--source",
        nats_broker.url,
        "--subject",
        nats_broker.subject or "",
        "--table",
        "orders",
        "--batch-ms",
        "100",
    )
    assert made.returncode == 0, made.stderr
    assert "reads nats://" in made.stdout
    nats_broker.publish(
        [orjson.dumps({"id": i, "amount": i * 1.5}) for i in range(200)] + [b"oops"]
    )
    shown = _shown_once(server, lambda s: s["stats"]["messages"] == 201, "201 messages", 120)
    stats = shown["stats"]
    assert (stats["messages"], stats["dead_letters"]) == (201, 1), stats
    counted = server.cli(
        "sql", "SELECT count(*) AS n, count(DISTINCT id) AS d FROM orders", "--format", "csv"
    )
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.split()[-1] == "200,200"  # 200 rows, 200 distinct ids
    listed = json.loads(server.cli("streams", "list", "--json").stdout)
    assert [(s["name"], s["stats"]["status"]) for s in listed] == [("orders-in", "running")]
    scraped = httpx.get(f"{server.url}/metrics", timeout=30).text
    labels = 'project="default",source="nats",stream="orders-in",table="orders"'
    assert f"loopml_stream_messages_total{{{labels}}} 201.0" in scraped
    assert f"loopml_stream_dead_letters_total{{{labels}}} 1.0" in scraped

    # The same stream in YAML: unchanged, then a new transform the consumer restarts with.
    spec = tmp_path / "streams.yaml"
    fields = (
        f"name: orders-in\nsource: {nats_broker.url}\nsubject: '{nats_broker.subject}'\n"
        "table: orders\nbatch_ms: 100\n"
    )
    spec.write_text(fields)
    same = server.cli("streams", "apply", str(spec))
    assert "stream orders-in unchanged" in same.stdout, same.stdout + same.stderr
    spec.write_text(fields + "transform: SELECT id + 1000 AS id, amount FROM batch\n")
    assert "stream orders-in updated" in server.cli("streams", "apply", str(spec)).stdout
    # The consumer sees the change at its next report (within 2 s) and stops without
    # writing another; a heartbeat well after the change is the restarted consumer's.
    _shown_once(server, _restarted, "a heartbeat of the restarted consumer", 60)
    nats_broker.publish([orjson.dumps({"id": 1, "amount": 1.0})])
    _shown_once(server, lambda s: s["stats"]["messages"] == 202, "202 messages", 60)
    top = server.cli("sql", "SELECT max(id) AS m FROM orders", "--format", "csv")
    assert top.stdout.split()[-1] == "1001", top.stdout
    deleted = server.cli("streams", "delete", "orders-in")
    assert deleted.returncode == 0, deleted.stderr
    assert "stream orders-in deleted; its consumer on the broker removed" in deleted.stdout
    subject = nats_broker.subject or ""
    assert asyncio.run(jetstream_consumers(nats_broker.url, subject)) == []


@pytest.mark.kafka
def test_a_kafka_stream_created_with_the_cli_fills_its_table(
    server: RunningServer, kafka_server: str
) -> None:
    kafka = Broker("kafka", kafka_server, f"e2e{time.time_ns() % 10**9}")
    kafka.create()
    try:
        made = server.cli(
            "streams", "create", "orders-k", "--source", kafka.url, "--subject",
            kafka.subject or "", "--table", "orders_k", "--batch-ms", "100",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert f"reads {kafka.url} topic {kafka.subject}" in made.stdout
        kafka.publish([orjson.dumps({"id": i}) for i in range(50)] + [b"oops"])

        def shown() -> dict[str, Any]:
            found: dict[str, Any] = json.loads(
                server.cli("streams", "show", "orders-k", "--json").stdout
            )
            return found

        stats = eventually(
            lambda: (s := shown()["stats"])["messages"] == 51 and s, 120, "51 messages"
        )
        assert (stats["messages"], stats["dead_letters"]) == (51, 1), stats
        scraped = httpx.get(f"{server.url}/metrics", timeout=30).text
        labels = 'project="default",source="kafka",stream="orders-k",table="orders_k"'
        assert f"loopml_stream_messages_total{{{labels}}} 51.0" in scraped
        deleted = server.cli("streams", "delete", "orders-k")
        assert deleted.returncode == 0, deleted.stderr
    finally:
        kafka.remove()
