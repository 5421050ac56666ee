"""The online store: each entity's newest feature values, behind ``OnlineStore``.

``open_online_store`` picks the backend from its config's ``type`` (``sqlite`` embedded,
``redis`` at scale). ``encode_entity`` and ``encode_values`` turn keys and values into the
opaque strings and bytes backends store: a key is its values as text, so ``42`` and
``"42"`` name the same entity (a query string carries no types).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from loopml.core.errors import ValidationError
from loopml.core.features import (
    RedisOnlineStoreConfig,
    SqliteOnlineStoreConfig,
)
from loopml.data.features.online.base import OnlineRow as OnlineRow
from loopml.data.features.online.base import OnlineStore as OnlineStore


def _sqlite(config: Any, home: Path) -> OnlineStore:
    from loopml.data.features.online.backends.sqlite import SqliteOnlineStore

    return SqliteOnlineStore(config, home / "online.db")


def _redis(config: Any, home: Path) -> OnlineStore:
    from loopml.data.features.online.backends.redis import RedisOnlineStore

    return RedisOnlineStore(config)


_BACKENDS: dict[str, Callable[[Any, Path], OnlineStore]] = {"sqlite": _sqlite, "redis": _redis}


def open_online_store(
    config: SqliteOnlineStoreConfig | RedisOnlineStoreConfig, home: Path
) -> OnlineStore:
    """The backend ``config.type`` names; ``home`` holds the SQLite file by default."""
    return _BACKENDS[config.type](config, home)


class LazyOnlineStore:
    """The server's online store, opened on first use (most servers never read features),
    shared by every request thread, closed with the server."""

    def __init__(self, config: SqliteOnlineStoreConfig | RedisOnlineStoreConfig, home: Path):
        self._config = config
        self._home = home
        self._lock = threading.Lock()
        self._store: OnlineStore | None = None

    def get(self) -> OnlineStore:
        """The store, opened now if it was not yet."""
        with self._lock:
            if self._store is None:
                self._store = open_online_store(self._config, self._home)
            return self._store

    def close(self) -> None:
        """Close the store if it was opened."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def namespace(project: str, view: str) -> str:
    """Where a view's rows live in the store."""
    return f"{project}/{view}"


def encode_entity(keys: Sequence[str], entity: dict[str, Any]) -> str:
    """The store's key for ``entity``, which must give exactly the view's ``keys``.

    Raises:
        ValidationError: a missing or unknown key, or a value that is not a scalar.
    """
    if not isinstance(entity, dict) or set(entity) != set(keys):
        got = sorted(entity) if isinstance(entity, dict) else entity
        raise ValidationError(
            f"expected an entity with the keys {list(keys)}, got {str(got)[:200]}",
            details={"field": "entities", "keys": list(keys)},
        )
    parts = []
    for key in keys:
        value = entity[key]
        if value is None or isinstance(value, dict | list):
            raise ValidationError(
                f"entity key {key!r} must be a string or a number, got {str(value)[:80]!r}",
                details={"field": "entities", "key": key},
            )
        parts.append(_text(value))
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=False)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def encode_values(values: dict[str, Any]) -> bytes:
    """Feature values as stored (JSON; datetimes in ISO 8601, decimals as text).

    A copy of orjson's answer: orjson writes into a 4 KiB buffer and shrinks it in place,
    and the freed tails stay between live objects, so every value kept (a batch waiting to
    be written) held about 4 KiB of resident memory: 78 MB for 20,000 values of 10
    features, against 5 MB copied.
    """
    return memoryview(orjson.dumps(values, default=str)).tobytes()


def is_fresh(row: OnlineRow, ttl_s: int, now_us: int) -> bool:
    """Whether ``row`` is at most ``ttl_s`` old at ``now_us`` (as the offline join has it: a
    value exactly ``ttl_s`` old is still used)."""
    return row.event_us >= now_us - ttl_s * 1_000_000


def now_us() -> int:
    """The wall clock in microseconds since the epoch."""
    return time.time_ns() // 1000


def decode_values(data: bytes) -> dict[str, Any]:
    """Stored values back as a dict."""
    loaded: dict[str, Any] = orjson.loads(data)
    return loaded


__all__ = [
    "LazyOnlineStore",
    "OnlineRow",
    "OnlineStore",
    "decode_values",
    "encode_entity",
    "encode_values",
    "is_fresh",
    "namespace",
    "now_us",
    "open_online_store",
]
