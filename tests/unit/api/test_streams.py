"""Stream definitions through the API and the SDK (no broker: the supervisor is off here;
the consumers are tested on the real brokers in tests/unit/data/streams)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from loopml.api import create_app
from loopml.client import Client
from loopml.core.errors import AlreadyExistsError, NotFoundError
from loopml.settings import Settings

STREAMS = "/api/v1/projects/default/streams"


@pytest.fixture
def http(settings: Settings) -> Iterator[TestClient]:
    quiet = settings.model_copy(
        update={"server": settings.server.model_copy(update={"streams": False})}
    )
    with TestClient(create_app(quiet), base_url="http://127.0.0.1") as test_client:
        yield test_client


def test_stream_lifecycle(client: Client, http: TestClient) -> None:
    made = client.streams.create(
        "orders-in", source="nats://127.0.0.1:4222", subject="orders.*", table="orders"
    )
    assert made.config.source.type == "nats"
    assert (made.config.table, made.config.dead_letter) == ("orders", "orders__dead")
    assert (made.paused, made.stats.status, made.stats.messages) == (False, "stopped", 0)
    redis = client.streams.create(
        "clicks", source="redis://127.0.0.1:6379/0?stream=clicks", table="clicks", batch_rows=500
    )
    assert redis.config.batch_rows == 500
    assert [s.name for s in client.streams.list()] == ["clicks", "orders-in"]
    assert client.streams.pause("orders-in").paused is True
    assert client.streams.get("orders-in").paused is True
    assert client.streams.resume("orders-in").paused is False
    with pytest.raises(AlreadyExistsError):
        client.streams.create("clicks", source="nats://127.0.0.1", subject="a", table="t")
    client.streams.delete("orders-in")
    with pytest.raises(NotFoundError):
        client.streams.get("orders-in")
    kinds = [
        e["type"] for e in http.get("/api/v1/events", params={"type": "stream.*"}).json()["items"]
    ]
    assert kinds == [
        "stream.created",
        "stream.created",
        "stream.paused",
        "stream.resumed",
        "stream.deleted",
    ]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"source": "http://127.0.0.1:4222", "subject": "a"}, "unsupported stream source"),
        ({"source": "nats://127.0.0.1:4222", "subject": None}, "needs a subject"),
        ({"source": "redis://127.0.0.1:6379/0", "subject": None}, "stream key"),
        ({"source": "redis://u:p@127.0.0.1:6379/0?stream=k"}, "credentials"),
        ({"transform": "SELECT * FROM other"}, "reads only its micro-batch"),
        ({"transform": "DROP TABLE batch"}, "refused"),
        ({"transform": "SELECT * FROM read_csv('/etc/passwd')"}, "read_csv"),
        ({"table": "Bad-Name"}, "table"),
        ({"dead_letter": "orders"}, "must differ"),
        ({"batch_rows": 0}, "batch_rows"),
    ],
)
def test_bad_definitions_are_422_and_store_nothing(
    http: TestClient, client: Client, body: dict[str, object], says: str
) -> None:
    sent = {
        "name": "s1",
        "source": "nats://127.0.0.1:4222",
        "subject": "orders.*",
        "table": "orders",
    }
    answer = http.post(STREAMS, json={**sent, **body})
    assert answer.status_code == 422, answer.text
    assert says in answer.text
    assert client.streams.list() == []


def test_unknown_project_or_stream_is_404(http: TestClient) -> None:
    assert http.get("/api/v1/projects/nope/streams").status_code == 404
    assert http.post(STREAMS + "/nope/pause").status_code == 404
    assert http.delete(STREAMS + "/nope").status_code == 404
