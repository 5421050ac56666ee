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
from tests.brokers import Broker


@pytest.mark.redis
@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_a_stopping_consumer_gives_up_a_batch_it_cannot_commit(
    store: MetadataStore, artifacts: ArtifactStore, project: str, broker: Broker
) -> None:
    stream = service.create(
        store, project, "s1", source=broker.source, table="orders", batch_ms=1500,
        actor="test",
    )  # fmt: skip
    broker.publish([orjson.dumps({"id": i}) for i in range(5)])
    options = ConsumerOptions(report_every_s=0.2, retry_first_s=0.05, stop_grace_s=1.0)

    async def run() -> tuple[float, StreamConsumer]:
        consumer = StreamConsumer(store, artifacts, LakeSettings(), stream, options=options)
        task = asyncio.create_task(consumer.run())
        client = aioredis.Redis.from_url(broker.url)
        try:
            # The batch is gathering (1.5 s window): the group goes away under it, so every
            # commit fails asking for the ack floor (NOGROUP, a broker error, not loopml's).
            deadline = time.monotonic() + 10
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
            await asyncio.wait_for(task, 10)  # before: retried until the broker came back
            return time.monotonic() - asked, consumer
        finally:
            await client.aclose()

    took, consumer = asyncio.run(run())
    assert 0.9 <= took < 5, took  # the grace, then gave up
    assert consumer.committed == 0
    assert "NOGROUP" in (consumer.stats.last_error or ""), consumer.stats
