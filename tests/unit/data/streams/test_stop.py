"""A consumer asked to stop returns even when the batch in hand cannot be committed: a
broker fault that does not pass is retried for ``stop_grace_s``, then the batch is left
unacked to the broker (which redelivers it), so a stopping process never hangs."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import redis.asyncio as aioredis

from loopml.data.streams import service
from loopml.data.streams.consumer import ConsumerOptions, StreamConsumer, consumer_name
from loopml.settings import LakeSettings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from loopml.store import streams as stream_rows
from tests.brokers import Broker


@pytest.mark.redis
@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_a_stopping_consumer_gives_up_a_batch_it_cannot_commit(
    store: MetadataStore, artifacts: ArtifactStore, project: str, broker: Broker
) -> None:
    stream = service.create(
        store, project, "s1", source=broker.source, table="orders", batch_ms=4000,
        actor="test",
    )  # fmt: skip
    broker.publish([orjson.dumps({"id": i}) for i in range(5)])
    options = ConsumerOptions(report_every_s=0.2, retry_first_s=0.05, stop_grace_s=1.0)

    async def run() -> tuple[float, StreamConsumer]:
        consumer = StreamConsumer(store, artifacts, LakeSettings(), stream, options=options)
        task = asyncio.create_task(consumer.run())
        client = aioredis.Redis.from_url(broker.url)
        try:
            # The batch is gathering (a 4 s window, long beside the 0.3 s below even with
            # the machine loaded): the group goes away under it, so every commit fails asking
            # for the ack floor (NOGROUP, a broker error, not loopml's). The deadline is a
            # hang guard: the waits below end on their conditions.
            deadline = time.monotonic() + 120
            while consumer.stats.status != "running" and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            key = broker.source.rsplit("=", 1)[1]
            await client.xgroup_destroy(key, consumer_name(stream))
            while consumer.stats.errors < 3 and time.monotonic() < deadline:
                assert not task.done()
                await asyncio.sleep(0.05)
            assert consumer.stats.errors >= 3, consumer.stats
            asked = time.monotonic()
            consumer.stop()
            # A hang guard, not a check: before, it retried until the broker came back.
            await asyncio.wait_for(task, 120)
            return time.monotonic() - asked, consumer
        finally:
            await client.aclose()

    took, consumer = asyncio.run(run())
    # It retried for the grace, then gave up: returned (above), nothing committed, the
    # broker's error kept. How soon after the grace it returned is the load's, not its own.
    assert took >= 0.9, took
    assert consumer.committed == 0
    assert "NOGROUP" in (consumer.stats.last_error or ""), consumer.stats


@pytest.mark.nats
@pytest.mark.parametrize("broker", ["nats"], indirect=True)
def test_a_stopping_consumer_returns_when_the_broker_client_does_not_close(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    broker: Broker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A client's close can hang on a peer that stopped reading (its last flush waits for a
    # full socket to drain): the consumer gives it CLOSE_TIMEOUT_S, then lets go of the stream.
    # The hang is put in the NATS client library's close, under loopml's real source.
    from nats.aio.client import Client

    from loopml.data.streams import consumer as consumer_module

    real_close = Client.close

    async def never_closes(self: Client) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(consumer_module, "CLOSE_TIMEOUT_S", 0.5)
    stream = service.create(
        store, project, "s1", source=broker.source, subject=broker.subject, table="orders",
        batch_ms=50, actor="test",
    )  # fmt: skip
    broker.publish([orjson.dumps({"id": i}) for i in range(5)])
    options = ConsumerOptions(report_every_s=0.2)

    async def run() -> tuple[float, StreamConsumer]:
        consumer = StreamConsumer(store, artifacts, LakeSettings(), stream, options=options)
        task = asyncio.create_task(consumer.run())
        deadline = time.monotonic() + 30
        while consumer.committed < 5 and time.monotonic() < deadline:
            assert not task.done(), task
            await asyncio.sleep(0.05)
        asked = time.monotonic()
        monkeypatch.setattr(Client, "close", never_closes)
        consumer.stop()
        try:
            # A hang guard, not a check: before, it waited on the close for ever.
            await asyncio.wait_for(task, 120)
        finally:
            monkeypatch.setattr(Client, "close", real_close)
        took = time.monotonic() - asked
        await consumer.source.close()  # this test's own: no socket left open
        return took, consumer

    took, consumer = asyncio.run(run())
    assert consumer.committed == 5
    assert took >= 0.4, took  # it gave the close its time, then let go (returned above)
    with store.session() as session:
        assert not stream_rows.holds(session, stream.id, consumer.owner)  # let go


@pytest.mark.redis
@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_the_status_reporter_ends_on_the_stop_without_its_cancel(
    store: MetadataStore, artifacts: ArtifactStore, project: str, broker: Broker
) -> None:
    # Census run 21: a Kafka consumer sent SIGTERM never exited. Its tasks, dumped from the
    # live process: run() awaited its status reporter, which was "cancelling" yet asleep in
    # its loop. The cancel had been lost (Python 3.11's asyncio.wait_for, in the report,
    # returns the inner result when the inner call ends as the cancel arrives), and the
    # reporter only ever ended by a cancel. It now ends on the stop itself.
    stream = service.create(
        store, project, "s1", source=broker.source, table="orders", actor="test"
    )  # fmt: skip
    options = ConsumerOptions(report_every_s=0.05)

    async def run() -> None:
        consumer = StreamConsumer(store, artifacts, LakeSettings(), stream, options=options)
        await asyncio.to_thread(consumer._claim)  # the holder's reports: they keep it going
        reporter = asyncio.create_task(consumer._report_loop())
        await asyncio.sleep(0.2)  # a few reports, as a running consumer makes them
        assert not reporter.done()
        consumer.stop()
        # No cancel: before, the loop went on reporting for ever.
        await asyncio.wait_for(reporter, 30)

    asyncio.run(run())
