"""The one contract every ``OnlineStore`` passes, on the embedded SQLite file and on the
real Redis at 127.0.0.1:6379 (keys under a prefix of their own per test run): rows come
back as written, in the order asked, ``None`` where absent; a write never replaces a newer
event time; writing the same batch twice is a no-op; namespaces are apart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.core.features import RedisOnlineStoreConfig, SqliteOnlineStoreConfig
from loopml.data.features.online import OnlineRow, OnlineStore, open_online_store

NS = "default/user_stats"


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def online(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        store = open_online_store(SqliteOnlineStoreConfig(), tmp_path)
        yield store
        store.close()
        return
    url = request.getfixturevalue("redis_server")
    prefix = f"loopml-test:{uuid.uuid4().hex}"
    config = RedisOnlineStoreConfig(type="redis", url=url, key_prefix=prefix)
    store = open_online_store(config, tmp_path)
    yield store
    for ns in (NS, "other/user_stats"):
        store.delete_namespace(ns)
    store.close()


def _row(entity: str, event_us: int, value: str) -> OnlineRow:
    return OnlineRow(entity, event_us, value.encode())


def test_write_then_read_in_order(online: OnlineStore) -> None:
    online.write_batch(NS, [_row('["1"]', 10, "a"), _row('["2"]', 20, "b")])
    assert online.read_batch(NS, ['["2"]', '["3"]', '["1"]']) == [
        _row('["2"]', 20, "b"),
        None,
        _row('["1"]', 10, "a"),
    ]
    assert online.read_batch(NS, []) == []


def test_newer_wins_and_rewrites_are_noops(online: OnlineStore) -> None:
    online.write_batch(NS, [_row('["1"]', 100, "new")])
    online.write_batch(NS, [_row('["1"]', 50, "old")])
    assert online.read_batch(NS, ['["1"]']) == [_row('["1"]', 100, "new")]
    online.write_batch(NS, [_row('["1"]', 100, "new")])
    online.write_batch(NS, [_row('["1"]', 101, "newer")])
    assert online.read_batch(NS, ['["1"]']) == [_row('["1"]', 101, "newer")]


def test_large_batches(online: OnlineStore) -> None:
    rows = [_row(f'["{n}"]', n, f"v{n}") for n in range(1200)]
    online.write_batch(NS, rows)
    assert online.read_batch(NS, [r.entity for r in rows]) == rows


def test_namespaces_apart_and_deleted(online: OnlineStore) -> None:
    online.write_batch(NS, [_row('["1"]', 1, "mine")])
    online.write_batch("other/user_stats", [_row('["1"]', 1, "theirs")])
    online.delete_namespace(NS)
    assert online.read_batch(NS, ['["1"]']) == [None]
    assert online.read_batch("other/user_stats", ['["1"]']) == [_row('["1"]', 1, "theirs")]
