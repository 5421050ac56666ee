"""What one stream source backend does that the other has no counterpart for; the shared
behaviours are in ``tests/contract/test_stream_source.py``."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest

from loopml.core.errors import ConfigurationError
from loopml.core.streams import NatsSource, RedisSource
from loopml.data.streams.base import open_source


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
