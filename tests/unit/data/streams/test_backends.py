"""What one stream source backend does that the others have no counterpart for; the shared
behaviours are in ``tests/contract/test_stream_source.py``."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest

from loopml.core.errors import ConfigurationError
from loopml.core.stream_sources import KafkaSource, NatsSource, RedisSource
from loopml.core.streams import Floor, under_floor
from loopml.data.streams.base import Message, StreamSource, open_source
from tests.brokers import kafka_publish, kafka_topic


@pytest.mark.nats
def test_nats_a_subject_no_jetstream_stream_captures_is_a_configuration_error(
    nats_server: str,
) -> None:
    subject = f"nowhere{uuid.uuid4().hex[:10]}.*"
    source = open_source(NatsSource(url=nats_server, subject=subject), "loopml-t", 1)

    async def scenario() -> None:
        try:
            await source.open()
        finally:
            await source.close()

    with pytest.raises(ConfigurationError, match="nats stream add"):
        asyncio.run(scenario())


@pytest.mark.redis
def test_redis_an_entry_without_a_data_field_is_its_fields_as_a_json_object(
    redis_server: str,
) -> None:
    import redis.asyncio as aioredis

    key = f"t-{uuid.uuid4().hex[:10]}"
    source = open_source(RedisSource(url=redis_server, key=key), "loopml-t", 1)

    async def scenario() -> list[bytes]:
        client = aioredis.Redis.from_url(redis_server)
        try:
            await client.xadd(key, {"id": "7", "name": "n\xe9"})
            await client.xadd(key, {"data": b'{"id": 8}', "other": "ignored"})
            await source.open()
            got = await source.fetch(10, 2.0)
            await source.ack(got)
            return [m.data for m in got]
        finally:
            await source.close()
            await client.delete(key)
            await client.aclose()

    fields, data = asyncio.run(scenario())
    assert orjson.loads(fields) == {"id": "7", "name": "n\xe9"}
    assert data == b'{"id": 8}'


@pytest.mark.kafka
def test_kafka_a_missing_topic_is_a_configuration_error_naming_server_and_topic(
    kafka_server: str,
) -> None:
    topic = f"nowhere-{uuid.uuid4().hex[:10]}"
    source = open_source(KafkaSource(url=kafka_server, topic=topic), "loopml-t", 1)

    async def scenario() -> None:
        try:
            await source.open()
        finally:
            await source.close()

    with pytest.raises(ConfigurationError) as raised:
        asyncio.run(scenario())
    assert topic in str(raised.value)
    assert kafka_server.removeprefix("kafka://") in str(raised.value)


@pytest.mark.kafka
def test_kafka_offsets_never_pass_a_message_not_acked(kafka_server: str) -> None:
    # Kafka's commit is cumulative: acking a later batch before an earlier one must not
    # commit past the earlier one, which a restarted consumer then reads again.
    topic = f"t-{uuid.uuid4().hex[:10]}"
    kafka_topic(kafka_server, topic, 1)
    kafka_publish(kafka_server, topic, [orjson.dumps({"id": i}) for i in range(30)])
    config = KafkaSource(url=kafka_server, topic=topic)

    async def fetch(source: StreamSource, n: int) -> list[Message]:
        got: list[Message] = []
        while len(got) < n:
            got += await source.fetch(n - len(got), 0.5)
        return got

    lags: list[int | None] = []

    async def scenario() -> tuple[Floor | None, Floor | None, list[Message]]:
        first = open_source(config, "loopml-t", 30)
        await first.open()
        try:
            early, late = await fetch(first, 10), await fetch(first, 20)
            await first.ack(late)
            held_back = await first.floor()
            lags.append(first.lag)
            await first.ack(early)
            floor = await first.floor()
            lags.append(first.lag)
            await first.ack(early)  # again: a retried ack changes nothing
        finally:
            await first.close()
        again = open_source(config, "loopml-t", 30)
        await again.open()
        try:
            return held_back, floor, await again.fetch(10, 2.0)
        finally:
            await again.close()

    try:
        held_back, floor, after = asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        kafka_topic(kafka_server, topic, 0)
    assert not under_floor((0, 0), held_back)  # offset 0 was not acked
    assert floor == {0: 29}
    assert after == []
    # The lag: the fetch replies' high watermark (30) less the committed offset.
    assert lags == [30, 0]
