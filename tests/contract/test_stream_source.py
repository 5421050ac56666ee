"""The one contract every ``StreamSource`` passes, on the real brokers: NATS JetStream (a
durable pull consumer), Redis Streams (a consumer group) and Kafka (a consumer group on
Tansu; a topic of one partition, so that its order is the stream's, and three where
consumers share the work). Whatever the broker: a source
reads from the start of the stream, or from after what its group acknowledged; a message not
acknowledged comes back, with the same id and body, to a restarted consumer or once its lease
(``redeliver_s``) expires; an acknowledged one never does; any body, even one that is not JSON
or not text, is delivered as it is and does not hold up the ones behind it (the consumer then
puts it in the dead-letter table); consumers sharing a group split the messages without
handing one to two of them; ``close`` may be called twice; and an unreachable server is a
clear error within a bound, never a hang.

Kafka differs in one place, by design: a partition moves only with the group's membership,
so a batch held too long goes to another consumer once its holder leaves the group (it
stopped fetching for ``redeliver_s``, Kafka's ``max.poll.interval.ms``), and a consumer
joining a group takes partitions along with what another held of them unacked (the commit
record drops those repeats).

Each test has its own JetStream stream, Redis key or Kafka topic (``tests.brokers``) and its
own group.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import orjson
import pytest

from loopml.core.errors import ServiceUnavailableError
from loopml.core.stream_sources import AnySource, parse_source
from loopml.core.streams import Floor, under_floor
from loopml.data import lake
from loopml.data.streams import service
from loopml.data.streams.backends import kafka as kafka_backend
from loopml.data.streams.backends import nats as nats_backend
from loopml.data.streams.backends import redis as redis_backend
from loopml.data.streams.base import Message, StreamSource, open_source
from loopml.data.streams.consumer import ConsumerOptions, StreamConsumer
from loopml.settings import LakeSettings
from loopml.storage import LocalArtifactStore
from loopml.store import MetadataStore, projects
from tests.brokers import BROKERS, Broker, broker_fixture

T = TypeVar("T")
LEASE_S = 2.0
"""``redeliver_s`` of the sources here: short, so that lease expiry is quick to see."""
# How long past its lease a message may take to come back: the broker's own timers and a
# loaded 2-core CI machine, with a 20x margin (see its test). A backend that never looks for
# expired leases fails.
SLACK_S = 12.0
# How long a test waits for a redelivery: a hang guard, past which it fails saying what came.
REDELIVERY_GUARD_S = 60.0
# A hang guard: past this, a test gives up on a source that cannot open and fails rather
# than hangs.
UNREACHABLE_BOUND_S = 60.0
# How soon a source that cannot open has failed and closed (see its test).
CLOSED_WITHIN_S = 25.0


@dataclass
class Place:
    """One test's stream on a real broker, and the sources reading it."""

    broker: Broker
    group: str

    @property
    def config(self) -> AnySource:
        return parse_source(self.broker.source, self.broker.subject)

    def source(self, group: str | None = None) -> StreamSource:
        """A fresh source on this stream, in this test's group unless ``group`` names one."""
        return open_source(self.config, group or self.group, LEASE_S)

    async def opened(self, group: str | None = None) -> StreamSource:
        made = self.source(group)
        await made.open()
        return made


@pytest.fixture(params=BROKERS)
def place(request: pytest.FixtureRequest) -> Iterator[Place]:
    for broker in broker_fixture(request):
        yield Place(broker, f"loopml-contract-{uuid.uuid4().hex[:10]}")


async def _bounded(scenario: Callable[[], Awaitable[T]]) -> T:
    return await asyncio.wait_for(scenario(), 90)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(_bounded(scenario))


def bodies(start: int, n: int) -> list[bytes]:
    return [orjson.dumps({"id": i}) for i in range(start, start + n)]


async def fetch(source: StreamSource, n: int, within_s: float = 10.0) -> list[Message]:
    """Up to ``n`` messages, fetching until they came or ``within_s`` passed."""
    got: list[Message] = []
    deadline = time.monotonic() + within_s
    while len(got) < n and time.monotonic() < deadline:
        got += await source.fetch(n - len(got), 0.2)
    return got


async def nothing_within(source: StreamSource, seconds: float) -> list[Message]:
    """Whatever ``source`` hands out in ``seconds`` (the test expects nothing)."""
    got: list[Message] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got += await source.fetch(100, 0.2)
    return got


def ids(messages: Sequence[Message]) -> list[tuple[int, int]]:
    return [m.id for m in messages]


def datas(messages: Sequence[Message]) -> list[bytes]:
    return [m.data for m in messages]


# ---------------------------------------------------------------- where reading starts


def test_a_new_group_reads_every_message_from_the_start_in_order(place: Place) -> None:
    before, after = bodies(0, 20), bodies(20, 5)
    place.broker.publish(before)

    async def scenario() -> tuple[list[Message], list[Message]]:
        source = await place.opened()
        try:
            first = await fetch(source, 20)
            await place.broker.apublish(after)
            return first, await fetch(source, 5)
        finally:
            await source.close()

    first, second = run(scenario)
    got = first + second
    assert datas(got) == before + after
    assert ids(got) == sorted(set(ids(got)))  # increasing, none twice
    assert all(m.subject for m in got)


def test_a_reopened_group_resumes_after_what_it_acknowledged(place: Place) -> None:
    sent = bodies(0, 30)
    place.broker.publish(sent)

    async def scenario() -> tuple[list[Message], Floor | None, list[Message], list[Message]]:
        source = await place.opened()
        try:
            acked = await fetch(source, 10)
            await source.ack(acked)
            floor = await source.floor()
        finally:
            await source.close()
        again = await place.opened()
        try:
            rest = await fetch(again, 20)
            await again.ack(rest)
        finally:
            await again.close()
        # Another group has its own place: it reads everything from the start.
        other = await place.opened(f"{place.group}-other")
        try:
            everything = await fetch(other, 30)
        finally:
            await other.close()
        return acked, floor, rest, everything

    acked, floor, rest, everything = run(scenario)
    assert datas(acked) == sent[:10]
    assert datas(rest) == sent[10:]
    assert floor is not None
    # At or below the floor nothing is delivered again (the consumer forgets those ids), so
    # it must not pass a message that was never acked, and it should reach the acked ones.
    assert under_floor(acked[-1].id, floor)
    assert not under_floor(rest[0].id, floor)
    assert datas(everything) == sent


# ---------------------------------------------------------------- at least once


def test_a_batch_not_acked_comes_back_to_a_restarted_consumer(place: Place) -> None:
    place.broker.publish(bodies(0, 10))

    async def scenario() -> tuple[list[Message], list[Message]]:
        first = await place.opened()
        try:
            held = await fetch(first, 10)
        finally:
            await first.close()  # a consumer that dies before its acks
        second = await place.opened()
        try:
            redelivered = await fetch(second, 10, within_s=REDELIVERY_GUARD_S)
            await second.ack(redelivered)
        finally:
            await second.close()
        return held, redelivered

    held, redelivered = run(scenario)
    assert len(held) == 10
    assert sorted(ids(redelivered)) == ids(held)
    assert sorted(datas(redelivered)) == sorted(datas(held))


def test_a_batch_held_past_its_lease_goes_to_another_consumer_and_not_before(
    place: Place,
) -> None:
    if place.broker.kind == "kafka":
        pytest.skip(
            "Kafka moves a partition with the group's membership, not per message: see "
            "test_kafka_a_batch_of_a_consumer_that_stops_fetching_moves_once_it_leaves"
        )
    place.broker.publish(bodies(0, 10))

    async def scenario() -> tuple[list[Message], list[Message], float, list[Message], float]:
        hung = await place.opened()
        other = await place.opened()
        try:
            asked = time.monotonic()  # the lease begins at delivery: after this
            held = await fetch(hung, 10)
            early = await nothing_within(other, LEASE_S / 2)
            looked_s = time.monotonic() - asked
            taken = await fetch(other, 10 - len(early), within_s=REDELIVERY_GUARD_S)
            took = time.monotonic() - asked
            await other.ack(early + taken)
        finally:
            await hung.close()
            await other.close()
        return held, early, looked_s, taken, took

    held, early, looked_s, taken, took = run(scenario)
    assert len(held) == 10
    # The lease holds: a live consumer's batch is not handed out twice. Whatever the other
    # consumer got while it looked was handed out before the lease ran out, unless a stalled
    # (loaded) test process looked for longer than the lease itself.
    assert early == [] or looked_s >= LEASE_S, (ids(early), looked_s)
    assert sorted(ids(early + taken)) == ids(held)
    # margin: redelivered 2.00-2.34 s after the first delivery (NATS, Redis; 5 runs with
    # both cores loaded by stress-ng --cpu 2) for a lease of 2 s: the bound allows the lease
    # and 35x the largest excess seen.
    assert took <= LEASE_S + SLACK_S, took


@pytest.mark.parametrize("place", [p for p in BROKERS if p.values == ("kafka",)], indirect=True)
def test_kafka_a_batch_of_a_consumer_that_stops_fetching_moves_once_it_leaves(
    place: Place,
) -> None:
    # Kafka's lease is the group membership: a consumer that keeps fetching keeps its
    # partitions and what it holds of them; one that stops for redeliver_s
    # (max.poll.interval.ms) leaves the group, and the next owner reads from the committed
    # offset, so the held batch comes back whole.
    place.broker.publish(bodies(0, 10))

    async def scenario() -> tuple[list[Message], list[Message], list[Message]]:
        hung = await place.opened()
        held = await fetch(hung, 10)
        other = await place.opened()
        try:
            # Both fetch for a while: the holder keeps its partition and its batch.
            early: list[Message] = []
            deadline = time.monotonic() + LEASE_S / 2
            while time.monotonic() < deadline:
                got_hung, got_other = await asyncio.gather(
                    hung.fetch(100, 0.2), other.fetch(100, 0.2)
                )
                early += got_hung + got_other
            # Then the holder stops fetching, as a hung consumer does.
            taken = await fetch(other, 10, within_s=60)
            await other.ack(taken)
        finally:
            await hung.close()
            await other.close()
        return held, early, taken

    held, early, taken = run(scenario)
    assert len(held) == 10
    assert early == []
    assert sorted(ids(taken)) == ids(held)


def test_acknowledged_messages_never_come_back(place: Place) -> None:
    sent = bodies(0, 20)
    place.broker.publish(sent)

    async def scenario() -> tuple[list[Message], list[Message], list[Message], list[Message]]:
        source = await place.opened()
        try:
            got = await fetch(source, 20)
            await source.ack(got)
            same = await nothing_within(source, LEASE_S + 1)  # past the lease
        finally:
            await source.close()
        reopened = await place.opened()
        try:
            later = await nothing_within(reopened, LEASE_S + 1)
            await place.broker.apublish(bodies(20, 1))
            new = await fetch(reopened, 1)
            await reopened.ack(new)
        finally:
            await reopened.close()
        return got, same, later, new

    got, same, later, new = run(scenario)
    assert datas(got) == sent
    assert same == []
    assert later == []
    assert datas(new) == bodies(20, 1)
    assert new[0].id > got[-1].id


# ---------------------------------------------------------------- any body

POISON = [b"not json", b"\xff\xfe\x00 not text", b"", b"[1, 2]", b'{"id": "x"}']


def test_any_body_is_delivered_as_it_is_and_does_not_hold_up_the_rest(place: Place) -> None:
    sent = [*bodies(0, 3), *POISON, *bodies(3, 3)]
    place.broker.publish(sent)

    async def scenario() -> list[Message]:
        source = await place.opened()
        try:
            got = await fetch(source, len(sent))
            await source.ack(got)
            return got
        finally:
            await source.close()

    got = run(scenario)
    assert datas(got) == sent
    assert len(set(ids(got))) == len(sent)


def test_the_consumer_puts_poison_in_the_dead_letter_table_and_keeps_going(
    place: Place, tmp_path: Path
) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    store.upgrade()
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    with store.session() as session:
        projects.create(session, "p", actor="test")
    stream = service.create(
        store,
        "p",
        "s1",
        source=place.broker.source,
        subject=place.broker.subject,
        table="orders",
        batch_ms=50,
        redeliver_s=LEASE_S,
        actor="test",
    )
    good = bodies(0, 20)
    place.broker.publish([*good[:10], *POISON, *good[10:]])

    async def scenario() -> None:
        consumer = StreamConsumer(
            store, artifacts, LakeSettings(), stream, options=ConsumerOptions(report_every_s=0.2)
        )
        task = asyncio.create_task(consumer.run())
        deadline = time.monotonic() + 60
        while consumer.committed < len(good) + len(POISON) and time.monotonic() < deadline:
            assert not task.done(), task
            await asyncio.sleep(0.05)
        consumer.stop()
        await task

    try:
        run(scenario)
        rows = lake.read_dataset(store, artifacts, "p", "orders").to_table(columns=["id"])
        dead = lake.read_dataset(store, artifacts, "p", "orders__dead").to_table()
    finally:
        store.dispose()
    assert sorted(rows.column("id").to_pylist()) == list(range(20))
    payloads = dead.column("payload").to_pylist()
    assert len(payloads) == len(POISON)
    assert {b.decode() for b in POISON if b.isascii()} <= set(payloads)
    assert all(dead.column("reason").to_pylist())


def test_the_stream_reads_running_once_its_messages_land_and_stopped_after(
    place: Place, tmp_path: Path
) -> None:
    # The first status report comes before the first batch, not one interval later: here the
    # interval is a minute, longer than the test, so only that first report can say it.
    store = MetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    store.upgrade()
    with store.session() as session:
        projects.create(session, "p", actor="test")
    stream = service.create(
        store, "p", "s1", source=place.broker.source, subject=place.broker.subject,
        table="orders", batch_ms=50, redeliver_s=LEASE_S, actor="test",
    )  # fmt: skip
    place.broker.publish(bodies(0, 5))

    def status() -> str:
        return service.get(store, "p", "s1").stats.status

    async def scenario() -> tuple[str, str]:
        consumer = StreamConsumer(
            store,
            LocalArtifactStore(tmp_path / "artifacts"),
            LakeSettings(),
            stream,
            options=ConsumerOptions(report_every_s=60),
        )
        task = asyncio.create_task(consumer.run())
        deadline = time.monotonic() + 60
        while consumer.committed < 5 and time.monotonic() < deadline:
            assert not task.done(), task
            await asyncio.sleep(0.05)
        while_running = status()
        consumer.stop()
        await task
        return while_running, status()

    try:
        assert status() == "stopped"  # as created
        assert run(scenario) == ("running", "stopped")
    finally:
        store.dispose()


# ---------------------------------------------------------------- one group, several consumers


@pytest.fixture
def shared_place(place: Place) -> Iterator[Place]:
    """``place``, but a Kafka topic of three partitions: consumers share a topic by them."""
    if place.broker.kind != "kafka":
        yield place
        return
    broker = Broker("kafka", place.broker.url, uuid.uuid4().hex[:10], partitions=3)
    broker.create()
    try:
        yield Place(broker, place.group)
    finally:
        broker.remove()


def test_consumers_in_one_group_share_the_work_without_duplicates(shared_place: Place) -> None:
    place = shared_place
    sent = bodies(0, 120)
    place.broker.publish(sent)

    async def scenario() -> tuple[list[Message], list[Message]]:
        first = await place.opened()
        second: StreamSource | None = None
        a: list[Message] = []
        b: list[Message] = []
        try:
            # The first holds a batch, unacked, when the second joins: the second must not
            # be handed it.
            held = await fetch(first, 20)
            second = await place.opened()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if len({*ids(held), *ids(a), *ids(b)}) >= len(sent):
                    break
                got_a, got_b = await asyncio.gather(first.fetch(10, 0.3), second.fetch(10, 0.3))
                await asyncio.gather(second.ack(got_b), first.ack(got_a))
                a += got_a
                b += got_b
            await first.ack(held)
            return held + a, b
        finally:
            await first.close()
            if second is not None:
                await second.close()

    a, b = run(scenario)
    together = ids(a) + ids(b)
    twice = {i for i in together if together.count(i) > 1}
    if place.broker.kind == "kafka":
        # A partition moved to the second consumer with what the first held of it unacked:
        # the 20 held, or a batch fetched and not yet acked when the rebalance came (its ack
        # then commits nothing). Those, and only those, go twice, each to the first before
        # the second (the stream's commit record drops such repeats).
        assert twice <= set(ids(a)), "a message went to both that the first never held"
        assert len(set(ids(b))) == len(ids(b)), "the second consumer got a message twice"
    else:
        assert not twice, "a message went to both consumers"
    everything = dict.fromkeys(datas(a) + datas(b))  # once each, in order of arrival
    assert sorted(everything, key=lambda d: orjson.loads(d)["id"]) == sent
    assert b, "the second consumer got no share of the work"


# ---------------------------------------------------------------- lifecycle and failures


def test_close_may_be_called_twice_and_before_open(place: Place) -> None:
    place.broker.publish(bodies(0, 1))

    async def scenario() -> list[Message]:
        never_opened = place.source()
        await never_opened.close()
        await never_opened.close()
        source = await place.opened()
        got = await fetch(source, 1)
        await source.ack(got)
        await source.close()
        await source.close()
        return got

    assert datas(run(scenario)) == bodies(0, 1)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class _Silent:
    """A server that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def _at(place: Place, port: int) -> StreamSource:
    config = place.config
    url = f"{config.type}://127.0.0.1:{port}" + ("/0" if config.type == "redis" else "")
    return open_source(config.model_copy(update={"url": url}), place.group, LEASE_S)


async def _open_fails(source: StreamSource) -> tuple[Exception | None, float]:
    started = time.monotonic()
    try:
        await asyncio.wait_for(source.open(), UNREACHABLE_BOUND_S)
    except Exception as exc:
        return exc, time.monotonic() - started
    finally:
        await source.close()
    return None, time.monotonic() - started


@pytest.mark.parametrize("server", ["nothing listening", "silent"])
def test_an_unreachable_server_is_a_clear_error_within_a_bound(
    place: Place, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bound, shortened from 10 s so that the test does not wait it out four times.
    opening = 1.0
    monkeypatch.setattr(nats_backend, "OPEN_TIMEOUT_S", opening)
    monkeypatch.setattr(redis_backend, "OPEN_TIMEOUT_S", opening)
    monkeypatch.setattr(kafka_backend, "OPEN_TIMEOUT_S", opening)
    silent = _Silent() if server == "silent" else None
    port = silent.port if silent is not None else _closed_port()
    started = time.monotonic()
    try:
        error, took = run(lambda: _open_fails(_at(place, port)))
    finally:
        if silent is not None:
            silent.close()
    # The source's own error, not _open_fails's wait_for giving up at UNREACHABLE_BOUND_S:
    # so the open ended on the source's bound.
    assert isinstance(error, ServiceUnavailableError), repr(error)
    assert f"127.0.0.1:{port}" in str(error)
    closed_s = time.monotonic() - started
    # margin: failed and closed within 1.012 s at most (each broker, both servers, 5 runs
    # with both cores loaded by stress-ng --cpu 2) for an open bound of 1 s: the bound is
    # 24x that, and under the 30 s socket timeout Redis's close used to wait out asking the
    # silent server to leave its group.
    assert took <= closed_s <= CLOSED_WITHIN_S, (took, closed_s)
