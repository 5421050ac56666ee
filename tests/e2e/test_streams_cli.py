"""``loopml streams`` against a real ``loopml up`` and the real NATS: the server's supervisor
runs the consumer, messages published land, a poison one is a dead letter."""

from __future__ import annotations

import json
import time

import orjson
import pytest

from tests.brokers import Broker

from .conftest import RunningServer

pytestmark = [pytest.mark.e2e, pytest.mark.nats]


@pytest.fixture
def nats_broker(nats_server: str) -> Broker:
    made = Broker("nats", nats_server, f"e2e{time.time_ns() % 10**9}")
    made.create()
    yield made  # type: ignore[misc]
    made.remove()


def test_a_stream_created_with_the_cli_fills_its_table(
    server: RunningServer, nats_broker: Broker
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
    deadline = time.monotonic() + 120
    while True:
        shown = json.loads(server.cli("streams", "show", "orders-in", "--json").stdout)
        if shown["stats"]["messages"] == 201 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (shown["stats"]["messages"], shown["stats"]["dead_letters"]) == (201, 1)
    counted = server.cli(
        "sql", "SELECT count(*) AS n, count(DISTINCT id) AS d FROM orders", "--format", "csv"
    )
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.split()[-1] == "200,200"  # 200 rows, 200 distinct ids
    listed = json.loads(server.cli("streams", "list", "--json").stdout)
    assert [(s["name"], s["stats"]["status"]) for s in listed] == [("orders-in", "running")]
    assert server.cli("streams", "delete", "orders-in").returncode == 0
