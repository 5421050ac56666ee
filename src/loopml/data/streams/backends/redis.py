"""Redis Streams: a consumer group, with XAUTOCLAIM for messages whose lease expired.

The group ``loopml-<stream id>`` is created at the start of the key (``0``) if missing, and
the key with it. Each source reads as a consumer of its own in the group (``loopml-`` and a
random suffix), so sources sharing a group never read each other's pending entries: an
entry is handed out again only once it has been pending ``redeliver_s`` (its holder died or
is stuck), when a source of the group takes it over with ``XAUTOCLAIM``, which each looks
for every half of that. A source that closes holding nothing leaves the group. An entry's
body is its ``data`` field when it has one (a JSON object), else its fields as a JSON
object of strings.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
import redis.exceptions

from loopml.core.errors import ServiceUnavailableError
from loopml.core.stream_sources import RedisSource
from loopml.core.streams import Position
from loopml.data.streams.base import Message, StreamSource

CONSUMER = "loopml"
"""The prefix of each source's consumer name in its group."""
CLAIM_EVERY_S = 10.0
"""The longest time between two looks for expired leases."""
OPEN_TIMEOUT_S = 10.0
"""How long ``open`` tries before the server counts as unreachable."""
LEAVE_TIMEOUT_S = 5.0
"""How long ``close`` tries to leave the group before it lets the name stay."""
SOCKET_TIMEOUT_S = 30.0
"""A reply slower than this fails the call, so a server that stops answering is an error,
not a hang; blocking reads wait at most ``_BLOCK_MAX_MS``, well inside it."""
_BLOCK_MAX_MS = 5_000
_ACK_CHUNK = 10_000
REMOVE_TIMEOUT_S = 3.0
"""How long a stream's deletion tries to reach Redis to destroy its group (the definition is
deleted either way)."""


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


async def remove_consumer(config: RedisSource, group: str) -> bool:
    """Destroy the consumer group ``group`` of ``config.key`` (its pending entries with it;
    the key's entries stay); ``False`` when neither is there.

    Raises:
        ServiceUnavailableError: Redis cannot be reached.
    """
    client = aioredis.Redis.from_url(
        config.url, socket_connect_timeout=REMOVE_TIMEOUT_S, socket_timeout=REMOVE_TIMEOUT_S
    )
    try:
        destroyed = await asyncio.wait_for(
            client.xgroup_destroy(config.key, group), REMOVE_TIMEOUT_S
        )
        return bool(destroyed)
    except redis.exceptions.ResponseError:
        return False  # no such key
    except (OSError, TimeoutError, redis.exceptions.RedisError) as exc:
        # Unreachable, slow (redis's own TimeoutError is no builtin one) or refusing.
        raise ServiceUnavailableError(
            f"cannot reach Redis at {config.url}: {str(exc) or type(exc).__name__}",
            details={"retryable": True},
        ) from exc
    finally:
        await client.aclose()


class RedisStreamSource(StreamSource):
    """A Redis stream key read through a consumer group."""

    def __init__(self, config: RedisSource, consumer: str, redeliver_s: float = 60.0) -> None:
        self.config = config
        self.claim_idle_ms = int(redeliver_s * 1000)
        """An entry pending this long is taken over (its holder died or is stuck)."""
        self.claim_every_s = min(CLAIM_EVERY_S, redeliver_s / 2)
        self.group = consumer
        self.name = f"{CONSUMER}-{uuid.uuid4().hex[:12]}"
        """This source's consumer in the group."""
        self.key = config.key.encode()
        self._redis: Any = None
        self._claim_cursor = b"0-0"
        self._claimed_at = 0.0

    async def open(self) -> None:
        self._redis = aioredis.Redis.from_url(
            self.config.url, socket_connect_timeout=5, socket_timeout=SOCKET_TIMEOUT_S
        )
        try:
            await asyncio.wait_for(
                self._redis.xgroup_create(self.key, self.group, id="0", mkstream=True),
                OPEN_TIMEOUT_S,
            )
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        except (OSError, TimeoutError, redis.exceptions.ConnectionError) as exc:
            # Nothing to leave on a server never reached: drop the client without a word
            # (``close`` would wait out the socket timeout asking a silent server).
            client, self._redis = self._redis, None
            await client.aclose()
            raise ServiceUnavailableError(
                f"cannot reach Redis at {self.config.url}: {exc or type(exc).__name__}",
                details={"retryable": True},
            ) from exc

    def _messages(self, entries: Sequence[Any]) -> list[Message]:
        key = self.config.key
        return [Message(_position(i), _body(f), i, key) for i, f in entries]

    async def fetch(self, max_messages: int, timeout_s: float) -> list[Message]:
        now = time.monotonic()
        if now - self._claimed_at >= self.claim_every_s:
            self._claimed_at = now
            claimed = await self._claim(max_messages)
            if claimed:
                return claimed
        block_ms = min(_BLOCK_MAX_MS, max(1, int(timeout_s * 1000)))
        return await self._read(b">", max_messages, block_ms)

    async def _read(self, start: bytes, count: int, block_ms: int | None) -> list[Message]:
        reply = await self._redis.xreadgroup(
            self.group, self.name, {self.key: start}, count=count, block=block_ms
        )
        if not reply:
            return []
        _, entries = reply[0]
        return self._messages(entries)

    async def _claim(self, count: int) -> list[Message]:
        reply = await self._redis.xautoclaim(
            self.key,
            self.group,
            self.name,
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
        if self._redis is None:
            return
        client, self._redis = self._redis, None
        try:
            # A server that stopped answering is not waited on for the socket timeout.
            await asyncio.wait_for(self._leave(client), LEAVE_TIMEOUT_S)
        except TimeoutError:
            pass  # the name stays in the group, as when the server is unreachable
        finally:
            await client.aclose()

    async def _leave(self, client: Any) -> None:
        # Deleting a consumer drops its pending entries from the group (nobody could claim
        # them again), so only one that holds none leaves; nothing else reads under its name.
        try:
            held = await client.xpending_range(
                self.key, self.group, min="-", max="+", count=1, consumername=self.name
            )
            if not held:
                await client.xgroup_delconsumer(self.key, self.group, self.name)
        except (OSError, TimeoutError, redis.exceptions.RedisError):
            pass  # unreachable or gone: the name stays in the group, holding nothing
