"""Redis Streams: a consumer group, with XAUTOCLAIM for messages stuck with a dead consumer.

The group ``loopml-<stream id>`` is created at the start of the key (``0``) if missing, and
the key with it. A restarted consumer first reads its own pending entries (``XREADGROUP ...
0``: delivered to it before, never acked), then new ones (``>``), and every so often claims
entries another consumer left pending longer than the stream's ``redeliver_s``. An entry's
body is its ``data`` field when it has one (a JSON object), else its fields as a JSON object
of strings.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
import redis.exceptions

from loopml.core.errors import ServiceUnavailableError
from loopml.core.streams import Position, RedisSource
from loopml.data.streams.base import Message, StreamSource

CONSUMER = "loopml"
CLAIM_EVERY_S = 10.0
_ACK_CHUNK = 10_000


def _position(entry_id: bytes) -> Position:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


def _body(fields: dict[bytes, bytes] | None) -> bytes:
    if not fields:
        return b""
    data = fields.get(b"data")
    if data is not None:
        return data
    text = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in fields.items()}
    return orjson.dumps(text)


class RedisStreamSource(StreamSource):
    """A Redis stream key read through a consumer group."""

    def __init__(self, config: RedisSource, consumer: str, redeliver_s: float = 60.0) -> None:
        self.config = config
        self.claim_idle_ms = int(redeliver_s * 1000)
        """An entry pending this long with another consumer is taken over (it died)."""
        self.group = consumer
        self.key = config.key.encode()
        self._redis: Any = None
        self._own_pending: bytes | None = b"0"
        """Where the read of this consumer's own pending entries has got to; ``None``
        once they are all read."""
        self._claim_cursor = b"0-0"
        self._claimed_at = 0.0

    async def open(self) -> None:
        self._redis = aioredis.Redis.from_url(self.config.url, socket_connect_timeout=5)
        try:
            await self._redis.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        except (OSError, redis.exceptions.ConnectionError) as exc:
            raise ServiceUnavailableError(
                f"cannot reach Redis at {self.config.url}: {exc}", details={"retryable": True}
            ) from exc

    def _messages(self, entries: Sequence[Any]) -> list[Message]:
        key = self.config.key
        return [Message(_position(i), _body(f), i, key) for i, f in entries]

    async def fetch(self, max_messages: int, timeout_s: float) -> list[Message]:
        if self._own_pending is not None:
            got = await self._read(self._own_pending, max_messages, None)
            if got:
                self._own_pending = got[-1].token
                return got
            self._own_pending = None
        now = time.monotonic()
        if now - self._claimed_at >= CLAIM_EVERY_S:
            self._claimed_at = now
            claimed = await self._claim(max_messages)
            if claimed:
                return claimed
        return await self._read(b">", max_messages, max(1, int(timeout_s * 1000)))

    async def _read(self, start: bytes, count: int, block_ms: int | None) -> list[Message]:
        reply = await self._redis.xreadgroup(
            self.group, CONSUMER, {self.key: start}, count=count, block=block_ms
        )
        if not reply:
            return []
        _, entries = reply[0]
        return self._messages(entries)

    async def _claim(self, count: int) -> list[Message]:
        reply = await self._redis.xautoclaim(
            self.key,
            self.group,
            CONSUMER,
            self.claim_idle_ms,
            start_id=self._claim_cursor,
            count=count,
        )
        self._claim_cursor = reply[0]
        return self._messages([(i, f) for i, f in reply[1]])

    async def ack(self, messages: Sequence[Message]) -> None:
        ids = [m.token for m in messages]
        for start in range(0, len(ids), _ACK_CHUNK):
            await self._redis.xack(self.key, self.group, *ids[start : start + _ACK_CHUNK])

    async def floor(self) -> Position | None:
        summary = await self._redis.xpending(self.key, self.group)
        groups = await self._redis.xinfo_groups(self.key)
        mine = next((g for g in groups if g["name"] == self.group.encode()), None)
        pending = int(summary["pending"])
        if mine is not None:
            lag = mine.get("lag")
            self.lag = pending + (int(lag) if lag is not None else 0)
        if pending:
            ms, seq = _position(summary["min"])
            return (ms, seq - 1) if seq else (ms - 1, 2**63 - 1)
        if mine is None:
            return None
        return _position(mine["last-delivered-id"])

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
