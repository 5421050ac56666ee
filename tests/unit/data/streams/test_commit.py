"""Micro-batches on real brokers: exactly once across redeliveries, restarts and a record
lost to a crash; poison messages and contract failures to the dead-letter table."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import orjson
import pyarrow.compute as pc
from sqlalchemy import update

from loopml.core.streams import Stream
from loopml.data import lake
from loopml.data.streams import service
from loopml.data.streams._commit import Outcome, StreamCommitter
from loopml.data.streams.base import Message, StreamSource, open_source
from loopml.data.streams.consumer import consumer_name
from loopml.settings import LakeSettings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events
from loopml.store.orm import LakeTableRow, StreamRow
from tests.brokers import Broker


def _bodies(start: int, n: int) -> list[bytes]:
    return [orjson.dumps({"id": i, "name": f"n{i}", "v": i * 0.5}) for i in range(start, start + n)]


def _define(store: MetadataStore, broker: Broker, project: str, **extra: object) -> Stream:
    return service.create(
        store,
        project,
        "s1",
        source=broker.source,
        subject=broker.subject,
        table="orders",
        redeliver_s=1,
        actor="test",
        **extra,  # type: ignore[arg-type]
    )


class _Session:
    """A source and a committer, as one consumer process holds them."""

    def __init__(self, store: MetadataStore, artifacts: ArtifactStore, stream: Stream) -> None:
        self.source: StreamSource = open_source(stream.config.source, consumer_name(stream), 1)
        self.committer = StreamCommitter(
            store, artifacts, LakeSettings(), stream, self.source.id_text, "test"
        )

    async def __aenter__(self) -> _Session:
        await self.source.open()
        self.committer.load()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.source.close()

    async def fetch(self, n: int, within_s: float = 10.0) -> list[Message]:
        """``n`` distinct messages. The source redelivers what is not acked within its 1 s,
        which fetching 500 on a loaded machine can outlast: one CI run got a message twice
        (the committer lands such a repeat once; the tests count the broker's batch)."""
        got: dict[object, Message] = {}
        deadline = time.monotonic() + within_s
        while len(got) < n and time.monotonic() < deadline:
            for message in await self.source.fetch(n - len(got), 0.2):
                got.setdefault(message.id, message)
        return list(got.values())

    async def commit(self, messages: Sequence[Message], ack: bool = True) -> Outcome:
        outcome = self.committer.commit(messages, await self.source.floor())
        if ack:
            await self.source.ack(messages)
        return outcome


def _ids(
    store: MetadataStore, artifacts: ArtifactStore, project: str, table: str = "orders"
) -> list[int]:
    data = lake.read_dataset(store, artifacts, project, table).to_table(columns=["id"])
    return sorted(data.column("id").to_pylist())


def test_a_batch_redelivered_after_a_restart_lands_once(
    store: MetadataStore, artifacts: ArtifactStore, project: str, broker: Broker
) -> None:
    stream = _define(store, broker, project)
    broker.publish(_bodies(0, 500))

    async def scenario() -> tuple[Outcome, Outcome, Outcome]:
        async with _Session(store, artifacts, stream) as first:
            batch = await first.fetch(500)
            assert len(batch) == 500
            landed = await first.commit(batch, ack=False)  # dies before its acks
        async with _Session(store, artifacts, stream) as second:
            again = await second.fetch(500)
            replay = await second.commit(again)
            await broker.apublish(_bodies(500, 100))
            more = await second.commit(await second.fetch(100))
        return landed, replay, more

    landed, replay, more = asyncio.run(scenario())
    assert (landed.rows, landed.duplicates) == (500, 0)
    assert (replay.rows, replay.duplicates) == (0, 500)
    assert (more.rows, more.duplicates) == (100, 0)
    assert _ids(store, artifacts, project) == list(range(600))
    shown = service.get(store, project, "s1").stats
    assert (shown.messages, shown.dead_letters) == (600, 0)
    with store.session() as session:
        appended = events.list_(session, type="table.appended", project=project).items
    assert len(appended) == 2  # one event per commit: the replay committed nothing


def test_a_commit_whose_record_was_lost_is_found_in_the_log(
    store: MetadataStore, artifacts: ArtifactStore, project: str, broker: Broker
) -> None:
    stream = _define(store, broker, project)
    broker.publish(_bodies(0, 300))

    async def land() -> None:
        async with _Session(store, artifacts, stream) as first:
            await first.commit(await first.fetch(300), ack=False)

    asyncio.run(land())
    # The process died between the Delta commit and its record: the metadata is behind.
    with store.session() as session:
        session.execute(update(StreamRow).values(gen=0, done=[], messages=0))
        session.execute(
            update(LakeTableRow)
            .where(LakeTableRow.name == "orders")
            .values(version=-1, row_count=0)
        )

    async def redeliver() -> Outcome:
        async with _Session(store, artifacts, stream) as second:
            return await second.commit(await second.fetch(300))

    replay = asyncio.run(redeliver())
    assert (replay.rows, replay.duplicates) == (0, 300)
    assert _ids(store, artifacts, project) == list(range(300))
    assert service.get(store, project, "s1").stats.messages == 300


def test_poison_messages_go_to_the_dead_letter_table_and_the_rest_lands(
    store: MetadataStore, artifacts: ArtifactStore, project: str, broker: Broker
) -> None:
    stream = _define(store, broker, project)
    good = _bodies(0, 10)
    bad = [
        b"not json",
        b"[1, 2]",
        b'{"id": "x", "name": "n", "v": 1}',
        b"",
        b'{"id": 99, "extra": 1}',
    ]
    broker.publish(good[:5] + bad + good[5:])

    async def run() -> Outcome:
        async with _Session(store, artifacts, stream) as session:
            first = await session.commit(await session.fetch(1))  # fixes the table's schema
            rest = await session.commit(await session.fetch(14))
            return Outcome(first.fresh + rest.fresh, first.rows + rest.rows, rest.dead, 0)

    outcome = asyncio.run(run())
    assert (outcome.fresh, outcome.rows, outcome.dead) == (15, 10, 5)
    assert _ids(store, artifacts, project) == list(range(10))
    dead = lake.read_dataset(store, artifacts, project, "orders__dead").to_table()
    assert sorted(dead.column("payload").to_pylist()) == sorted(b.decode() for b in bad)
    reasons = dict(
        zip(dead.column("payload").to_pylist(), dead.column("reason").to_pylist(), strict=True)
    )
    assert "not valid JSON" in reasons["not json"] or "Invalid value" in reasons["not json"]
    assert reasons['{"id": 99, "extra": 1}']  # a field the table does not have
    assert all(pc.is_valid(dead.column("message_id")).to_pylist())
    assert service.get(store, project, "s1").stats.dead_letters == 5


def test_contract_failures_are_dead_letters_with_the_rule(
    store: MetadataStore, artifacts: ArtifactStore, project: str, broker: Broker
) -> None:
    stream = _define(store, broker, project)
    lake.create_table(store, artifacts, project, "orders", actor="test")
    with store.session() as session:
        from loopml.store import lake_tables

        lake_tables.set_contract(
            session,
            project,
            "orders",
            {"columns": {"v": {"min": 1.0}}, "on_fail": "reject"},
            actor="test",
        )
    broker.publish(_bodies(0, 6))  # v = 0.0, 0.5 fail; 1.0 .. 2.5 pass

    async def run() -> Outcome:
        async with _Session(store, artifacts, stream) as session:
            return await session.commit(await session.fetch(6))

    outcome = asyncio.run(run())
    assert (outcome.rows, outcome.dead) == (4, 2)
    assert _ids(store, artifacts, project) == [2, 3, 4, 5]
    dead = lake.read_dataset(store, artifacts, project, "orders__dead").to_table()
    assert dead.column("reason").to_pylist() == ["contract: v:min", "contract: v:min"]


def test_a_transform_shapes_each_batch(
    store: MetadataStore, artifacts: ArtifactStore, project: str, broker: Broker
) -> None:
    stream = _define(
        store, broker, project, transform="SELECT id, v * 2 AS doubled FROM batch WHERE id % 2 = 0"
    )
    broker.publish(_bodies(0, 10))

    async def run() -> Outcome:
        async with _Session(store, artifacts, stream) as session:
            return await session.commit(await session.fetch(10))

    outcome = asyncio.run(run())
    assert outcome.rows == 5
    rows = lake.read_dataset(store, artifacts, project, "orders").to_table().sort_by("id")
    assert rows.column_names == ["id", "doubled"]
    assert rows.column("doubled").to_pylist() == [0.0, 2.0, 4.0, 6.0, 8.0]
