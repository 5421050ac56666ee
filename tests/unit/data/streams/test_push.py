"""Stream push on real brokers: each committed micro-batch's newest values per entity land
in a feature view's online store (SQLite), a redelivered batch changes nothing, a view not
applied yet is skipped until it is, and a view over another table is refused."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from loopml.core.errors import ValidationError
from loopml.core.features import SqliteOnlineStoreConfig
from loopml.data import lake
from loopml.data.features import views
from loopml.data.features.materialize import read_online
from loopml.data.features.online import OnlineStore, open_online_store
from loopml.data.features.push import OnlinePush
from loopml.data.streams import service
from loopml.data.streams._commit import StreamCommitter
from loopml.data.streams.base import Message, StreamSource, open_source
from loopml.data.streams.consumer import consumer_name
from loopml.settings import LakeSettings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from tests.brokers import Broker

T0 = datetime(2026, 3, 1, tzinfo=UTC)
VIEW = """\
name: order_stats
entities: [user]
event_time: ts
ttl: 1d
source: orders
features: [amount]
"""


def _bodies(rows: list[tuple[int, int, float, float]]) -> list[bytes]:
    """(id, user, hours after T0, amount) as JSON messages."""
    return [
        orjson.dumps({"id": i, "user": u, "ts": (T0 + timedelta(hours=h)).isoformat(), "amount": a})
        for i, u, h, a in rows
    ]


def _seed(store: MetadataStore, artifacts: ArtifactStore, project: str) -> None:
    """The table with its types (and one row), so that the view can be applied."""
    table = pa.table(
        {
            "id": pa.array([-1], pa.int64()),
            "user": pa.array([0], pa.int64()),
            "ts": pa.array([T0], pa.timestamp("us", tz="UTC")),
            "amount": pa.array([0.0], pa.float64()),
        }
    )
    lake.ingest_arrow(store, artifacts, project, "orders", table, actor="test")


async def _fetch(source: StreamSource, n: int) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + 10
    while len(got) < n and time.monotonic() < deadline:
        got += await source.fetch(n - len(got), 0.2)
    return got


def _values(store: MetadataStore, online: OnlineStore, project: str) -> list[object]:
    at = int((T0 + timedelta(hours=12)).timestamp() * 1_000_000)
    found = read_online(
        store, online, project, "order_stats", [{"user": u} for u in (1, 2, 3)], now=at
    )
    return [None if f.values is None else f.values["amount"] for f in found]


def test_batches_are_pushed_to_the_online_store_once(
    store: MetadataStore, artifacts: ArtifactStore, project: str, broker: Broker, tmp_path: Path
) -> None:
    _seed(store, artifacts, project)
    views.apply(store, artifacts, project, VIEW, actor="test")
    other = VIEW.replace("order_stats", "elsewhere").replace(
        "source: orders", "source: SELECT * FROM orders"
    )
    views.apply(store, artifacts, project, other, actor="test")
    with pytest.raises(ValidationError, match="not the stream's table"):
        service.create(
            store,
            project,
            "s0",
            source=broker.source,
            subject=broker.subject,
            table="orders",
            push=["elsewhere"],
            actor="test",
        )
    stream = service.create(
        store,
        project,
        "s1",
        source=broker.source,
        subject=broker.subject,
        table="orders",
        redeliver_s=1,
        push=["order_stats", "later_view"],
        actor="test",
    )
    assert stream.config.push == ["order_stats", "later_view"]
    online = open_online_store(SqliteOnlineStoreConfig(), tmp_path)
    broker.publish(_bodies([(1, 1, 1, 10.0), (2, 1, 3, 11.0), (3, 2, 2, 20.0), (4, 1, 2, 99.0)]))

    def session() -> tuple[StreamSource, StreamCommitter, OnlinePush]:
        source = open_source(stream.config.source, consumer_name(stream), 1)
        push = OnlinePush(store, online, project, "orders", stream.config.push)
        committer = StreamCommitter(
            store, artifacts, LakeSettings(), stream, source.id_text, "test", push=push
        )
        return source, committer, push

    async def scenario() -> tuple[int, int]:
        source, committer, push = session()
        await source.open()
        committer.load()
        batch = await _fetch(source, 4)
        committer.commit(batch, await source.floor())
        await source.close()  # dies before its acks: the batch comes back
        first = push.written
        source, committer, push = session()
        await source.open()
        committer.load()
        again = await _fetch(source, 4)
        replay = committer.commit(again, await source.floor())
        await source.ack(again)
        assert replay.duplicates == 4
        await source.close()
        return first, push.written

    first, replayed = asyncio.run(scenario())
    # The newest per user in the batch: user 1 at hour 3 (11.0), not the later-sent hour 2.
    assert (first, replayed) == (2, 0)
    assert _values(store, online, project) == [11.0, 20.0, None]
    online.close()


def test_a_view_that_lost_its_columns_fails_the_commit(
    store: MetadataStore, artifacts: ArtifactStore, project: str, tmp_path: Path
) -> None:
    _seed(store, artifacts, project)
    views.apply(store, artifacts, project, VIEW, actor="test")
    online = open_online_store(SqliteOnlineStoreConfig(), tmp_path)
    push = OnlinePush(store, online, project, "orders", ["order_stats", "later_view"])
    with pytest.raises(ValidationError, match="amount"):
        push(pa.table({"user": [1], "ts": pa.array([T0], pa.timestamp("us", tz="UTC"))}))
    online.close()
