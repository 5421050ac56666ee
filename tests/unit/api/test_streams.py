"""Stream definitions through the API and the SDK (no broker: the supervisor is off here;
the consumers are tested on the real brokers in tests/unit/data/streams)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.errors import AlreadyExistsError, NotFoundError
from loopml.core.streams import Stream
from loopml.data.streams.backends import nats as nats_backend
from loopml.data.streams.base import consumer_name, open_source
from loopml.platform import create_api_app
from loopml.settings import Settings
from tests.brokers import jetstream_capturing, jetstream_consumers

STREAMS = "/api/v1/projects/default/streams"


@pytest.fixture
def http(settings: Settings) -> Iterator[TestClient]:
    quiet = settings.model_copy(
        update={"server": settings.server.model_copy(update={"streams": False})}
    )
    with TestClient(create_api_app(quiet), base_url="http://127.0.0.1") as test_client:
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


STREAMS_FILE = """\
streams:
  - name: orders-in
    source: nats://127.0.0.1:4222
    subject: orders.*
    table: orders
    batch_ms: 100
  - name: clicks
    source: redis://127.0.0.1:6379/0?stream=clicks
    table: clicks
"""


def test_apply_creates_then_leaves_alone_then_updates(client: Client, http: TestClient) -> None:
    first = client.streams.apply(STREAMS_FILE)
    assert [(i.stream.name, i.action) for i in first.items] == [
        ("orders-in", "created"),
        ("clicks", "created"),
    ]
    assert first.items[0].stream.config.batch_ms == 100
    again = client.streams.apply(STREAMS_FILE)
    assert [i.action for i in again.items] == ["unchanged", "unchanged"]
    assert again.items[0].stream.updated_at == first.items[0].stream.updated_at
    changed = STREAMS_FILE.replace("batch_ms: 100", "batch_ms: 250\n    transform: SELECT 1 AS x")
    updated = client.streams.apply(changed)
    assert [i.action for i in updated.items] == ["updated", "unchanged"]
    shown = client.streams.get("orders-in")
    assert (shown.config.batch_ms, shown.config.transform) == (250, "SELECT 1 AS x")
    assert shown.id == first.items[0].stream.id  # the same stream: its committed ids stay
    kinds = [
        e["type"] for e in http.get("/api/v1/events", params={"type": "stream.*"}).json()["items"]
    ]
    assert kinds == ["stream.created", "stream.created", "stream.updated"]


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        (("table: orders", "table: orders2"), 409, "table cannot change"),
        (("subject: orders.*", "subject: other.*"), 409, "source cannot change"),
        (("batch_ms: 100", "batch_ms: 100\n    redeliver_s: 5"), 409, "redeliver_s cannot"),
        (("batch_ms: 100", "batch_ms: 100\n    colour: red"), 422, "unknown field 'colour'"),
        (("batch_ms: 100", "batch_ms: 100\n    transform: SELECT * FROM x"), 422, "micro-batch"),
        (("clicks\n", "orders-in\n"), 422, "more than once"),
        (("streams:", "streams: [\n"), 422, "not valid YAML"),
    ],
)
def test_a_refused_apply_changes_nothing(
    client: Client, http: TestClient, change: tuple[str, str], status: int, says: str
) -> None:
    client.streams.apply(STREAMS_FILE)
    text = (
        STREAMS_FILE.replace(*change) + "  - {name: third, source: nats://h, subject: s, table: t}"
    )
    answer = http.post(STREAMS + "/apply", json={"spec": text})
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]["message"]
    assert [s.name for s in client.streams.list()] == ["clicks", "orders-in"]  # not "third"
    assert client.streams.get("orders-in").config.table == "orders"


@pytest.mark.nats
def test_create_stream_makes_the_jetstream_stream_once(
    http: TestClient, client: Client, nats_server: str
) -> None:
    # Issue 55: the README's stream needed `nats stream add` first, from the nats CLI.
    subject = f"cs{uuid.uuid4().hex[:12]}.*"
    made_name = "loopml-default-orders-in"
    assert asyncio.run(jetstream_capturing(nats_server, subject)) is None
    try:
        body = {"name": "orders-in", "source": nats_server, "subject": subject, "table": "o"}
        answer = http.post(STREAMS, json={**body, "create_stream": True})
        assert answer.status_code == 201, answer.text
        assert answer.json()["broker_stream"] == {"name": made_name, "created": True}
        assert asyncio.run(jetstream_capturing(nats_server, subject)) == made_name
        again = client.streams.create(
            "orders-too", source=nats_server, subject=subject, table="o2", create_stream=True
        )
        assert again.broker_stream is not None
        assert (again.broker_stream.name, again.broker_stream.created) == (made_name, False)
        plain = client.streams.create("orders-3", source=nats_server, subject=subject, table="o3")
        assert plain.broker_stream is None
    finally:
        asyncio.run(jetstream_capturing(nats_server, subject, delete=made_name))
    assert asyncio.run(jetstream_capturing(nats_server, subject)) is None


@pytest.mark.nats
def test_an_apply_file_s_create_stream_makes_the_jetstream_stream(
    client: Client, nats_server: str
) -> None:
    subject = f"ap{uuid.uuid4().hex[:12]}.*"
    made_name = "loopml-default-orders-in"
    text = (
        f"name: orders-in\nsource: {nats_server}\nsubject: '{subject}'\ntable: o\n"
        "create_stream: true\n"
    )
    try:
        (item,) = client.streams.apply(text).items
        assert item.action == "created"
        assert item.broker_stream is not None
        assert (item.broker_stream.name, item.broker_stream.created) == (made_name, True)
        assert asyncio.run(jetstream_capturing(nats_server, subject)) == made_name
        # Applied again: the stream is unchanged, and the JetStream stream found, not made.
        (again,) = client.streams.apply(text).items
        assert again.action == "unchanged"
        assert again.broker_stream is not None
        assert again.broker_stream.created is False
    finally:
        asyncio.run(jetstream_capturing(nats_server, subject, delete=made_name))


@pytest.fixture
def _quick_to_give_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API gives up on an unreachable NATS after 1 s, not 10: what it answers then is
    the same, and four tests stop waiting 10 s each for a port nothing listens on."""
    monkeypatch.setattr(nats_backend, "OPEN_TIMEOUT_S", 1.0)


@pytest.mark.usefixtures("_quick_to_give_up")
def test_an_apply_whose_nats_is_unreachable_is_503_and_stores_nothing(
    http: TestClient, client: Client
) -> None:
    third = "{name: third, source: 'nats://127.0.0.1:1', subject: s, table: t, create_stream: true}"
    text = f"{STREAMS_FILE}  - {third}\n"
    answer = http.post(STREAMS + "/apply", json={"spec": text})
    assert answer.status_code == 503, answer.text
    assert "cannot reach NATS at nats://127.0.0.1:1" in answer.json()["error"]["message"]
    assert client.streams.list() == []


@pytest.mark.usefixtures("_quick_to_give_up")
def test_create_stream_on_an_unreachable_nats_is_503_and_stores_nothing(
    http: TestClient, client: Client
) -> None:
    body = {"name": "s1", "source": "nats://127.0.0.1:1", "subject": "a.*", "table": "t"}
    answer = http.post(STREAMS, json={**body, "create_stream": True})
    assert answer.status_code == 503, answer.text
    assert "cannot reach NATS at nats://127.0.0.1:1 within 1 s" in answer.text
    assert client.streams.list() == []


async def _open_and_close(stream: Stream) -> None:
    source = open_source(stream.config.source, consumer_name(stream))
    await source.open()
    await source.close()


@pytest.mark.nats
@pytest.mark.redis
def test_delete_removes_the_consumer_on_the_broker_and_keeps_its_messages(
    client: Client, nats_server: str, redis_server: str
) -> None:
    # Issue 55, item 7: a deleted stream's durable consumer stayed on NATS for ever.
    subject = f"del{uuid.uuid4().hex[:12]}.*"
    key = f"loopml-test-del-{uuid.uuid4().hex[:12]}"
    made = client.streams.create(
        "orders-in", source=nats_server, subject=subject, table="o", create_stream=True
    )
    assert made.broker_stream is not None
    clicks = client.streams.create("clicks", source=f"{redis_server}?stream={key}", table="c")
    try:
        for stream in (made, clicks):  # the consumers make their durable and group on open
            asyncio.run(_open_and_close(stream))
        assert asyncio.run(jetstream_consumers(nats_server, subject)) == [consumer_name(made)]
        groups = redis.Redis.from_url(redis_server).xinfo_groups(key)
        assert [g["name"].decode() for g in groups] == [consumer_name(clicks)]

        assert client.streams.delete("orders-in").broker_consumer == "removed"
        assert client.streams.delete("clicks").broker_consumer == "removed"
        assert asyncio.run(jetstream_consumers(nats_server, subject)) == []
        assert redis.Redis.from_url(redis_server).xinfo_groups(key) == []
        # The broker's own stream stays, with its messages.
        assert asyncio.run(jetstream_capturing(nats_server, subject)) == made.broker_stream.name
        with pytest.raises(NotFoundError):
            client.streams.get("orders-in")
    finally:
        asyncio.run(jetstream_capturing(nats_server, subject, delete=made.broker_stream.name))
        redis.Redis.from_url(redis_server).delete(key)


def test_delete_with_the_broker_unreachable_deletes_and_says_what_was_left(
    client: Client,
) -> None:
    client.streams.create("s1", source="nats://127.0.0.1:1", subject="a.*", table="t")
    gone = client.streams.delete("s1")
    assert gone.broker_consumer.startswith("left on the broker (cannot reach NATS"), gone
    hint = (
        f"nats --server nats://127.0.0.1:1 consumer rm <the stream capturing a.*> loopml-{gone.id}"
    )
    assert hint in gone.broker_consumer, gone.broker_consumer
    assert client.streams.list() == []
