"""The online store at scale: Redis, one hash per entity (``t``: event µs, ``v``: values).

The newer-wins rule runs in Redis as one Lua script per chunk, so it holds against
concurrent writers without a read-modify-write round trip.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import redis

from loopml.core.features import RedisOnlineStoreConfig
from loopml.data.features.online.base import OnlineRow, OnlineStore

_WRITE = """
for i, key in ipairs(KEYS) do
  local ts = tonumber(ARGV[2 * i - 1])
  local current = redis.call('HGET', key, 't')
  if (not current) or tonumber(current) <= ts then
    redis.call('HSET', key, 't', ARGV[2 * i - 1], 'v', ARGV[2 * i])
  end
end
return 0
"""
_CHUNK = 500
_FIELDS = ("t", "v")
_GLOB = re.compile(r"([*?\[\]\\])")


class RedisOnlineStore(OnlineStore):
    """The online store on a Redis server."""

    def __init__(self, config: RedisOnlineStoreConfig) -> None:
        self._prefix = config.key_prefix
        self._redis = redis.Redis.from_url(config.url, socket_timeout=10)
        self._write = self._redis.register_script(_WRITE)

    def _key(self, namespace: str, entity: str) -> str:
        return f"{self._prefix}:{namespace}:{entity}"

    def write_batch(self, namespace: str, rows: Sequence[OnlineRow]) -> None:
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            keys = [self._key(namespace, r.entity) for r in chunk]
            args: list[bytes | int] = []
            for row in chunk:
                args += [row.event_us, row.value]
            self._write(keys=keys, args=args)

    def read_batch(self, namespace: str, entities: Sequence[str]) -> list[OnlineRow | None]:
        answers: list[Any]
        if len(entities) == 1:
            # The serving path's usual call: one command, without a pipeline's own work
            # (7 of the read's 80 µs here).
            answers = [self._redis.hmget(self._key(namespace, entities[0]), _FIELDS)]
        else:
            pipe = self._redis.pipeline(transaction=False)
            for entity in entities:
                pipe.hmget(self._key(namespace, entity), _FIELDS)
            answers = pipe.execute()
        found: list[OnlineRow | None] = []
        for entity, (stamp, value) in zip(entities, answers, strict=True):
            found.append(None if stamp is None else OnlineRow(entity, int(stamp), value))
        return found

    def delete_namespace(self, namespace: str) -> None:
        pattern = _GLOB.sub(r"\\\1", f"{self._prefix}:{namespace}:") + "*"
        batch: list[bytes] = []
        for key in self._redis.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= _CHUNK:
                self._redis.unlink(*batch)
                batch.clear()
        if batch:
            self._redis.unlink(*batch)

    def first_key(self) -> str | None:
        pattern = _GLOB.sub(r"\\\1", f"{self._prefix}:") + "*"
        for key in self._redis.scan_iter(match=pattern, count=1000):
            return key.decode() if isinstance(key, bytes) else str(key)
        return None

    def close(self) -> None:
        self._redis.close()
