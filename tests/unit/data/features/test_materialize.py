"""Materializing views into the online store (SQLite and the real Redis), full and
incremental, and reading entities back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.core.errors import ValidationError
from loopml.core.features import RedisOnlineStoreConfig, SqliteOnlineStoreConfig
from loopml.data.features import views
from loopml.data.features.materialize import materialize, read_online
from loopml.data.features.online import OnlineStore, namespace, open_online_store
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events

from .conftest import ACTOR, VIEW_YAML, P, at, ingest, stats


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def online(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        store = open_online_store(SqliteOnlineStoreConfig(), tmp_path)
    else:
        prefix = f"loopml-test:{uuid.uuid4().hex}"
        url = request.getfixturevalue("redis_server")
        store = open_online_store(
            RedisOnlineStoreConfig(type="redis", url=url, key_prefix=prefix), tmp_path
        )
    yield store
    store.delete_namespace(namespace(P, "user_stats"))
    store.close()


def _us(days: float) -> int:
    return int(at(days).timestamp() * 1_000_000)


def _values(store: MetadataStore, online: OnlineStore, *users: object) -> list[object]:
    # Read as of day 3: no value read below is more than 2 days (the TTL) old then.
    entities = [{"user_id": u} for u in users]
    found = read_online(store, online, P, "user_stats", entities, now=_us(3))
    return [None if f.values is None else (f.values["spend"], f.values["visits"]) for f in found]


def test_full_then_incremental(
    store: MetadataStore, artifacts: ArtifactStore, online: OnlineStore
) -> None:
    ingest(store, artifacts, "stats", stats([(1, 0, 10.0, 1), (1, 2, 12.0, 2), (2, 1, 20.0, 5)]))
    views.apply(store, artifacts, P, VIEW_YAML, actor=ACTOR)
    first = materialize(store, artifacts, online, P, "user_stats", actor=ACTOR)
    assert (first.full, first.rows_read, first.entities_written) == (True, 3, 2)
    assert first.watermark == at(2)
    assert _values(store, online, 1, "2", 3) == [(12.0, 2), (20.0, 5), None]
    found = read_online(store, online, P, "user_stats", [{"user_id": 1}])[0]
    assert found.event_time == at(2)

    # Nothing new: an incremental run reads and writes nothing (idempotent).
    again = materialize(store, artifacts, online, P, "user_stats", actor=ACTOR)
    assert (again.full, again.rows_read, again.entities_written) == (False, 0, 0)
    assert again.watermark == at(2)

    # New rows: only those after the watermark are read; a late row (day 1.5, before the
    # watermark) is not, and could not overwrite user 1's newer day-2 value anyway.
    ingest(store, artifacts, "stats", stats([(2, 3, 21.0, 6), (3, 4, 30.0, 1), (1, 1.5, 0.0, 0)]))
    more = materialize(store, artifacts, online, P, "user_stats", actor=ACTOR)
    assert (more.full, more.rows_read, more.entities_written) == (False, 2, 2)
    assert more.watermark == at(4)
    assert _values(store, online, 1, 2, 3) == [(12.0, 2), (21.0, 6), (30.0, 1)]

    # A full run reads the late row too, but the newer value stays.
    full = materialize(store, artifacts, online, P, "user_stats", full=True, actor=ACTOR)
    assert (full.full, full.rows_read, full.entities_written) == (True, 6, 3)
    assert _values(store, online, 1, 2, 3) == [(12.0, 2), (21.0, 6), (30.0, 1)]
    with store.session() as session:
        kinds = [e.type for e in events.list_(session, project=P).items]
    assert kinds.count("feature_view.materialized") == 4
    state = views.get(store, P, "user_stats").materialized
    assert state is not None
    assert (state.version, state.watermark, state.rows) == (1, at(4), 3)


def test_new_version_starts_over(
    store: MetadataStore, artifacts: ArtifactStore, online: OnlineStore
) -> None:
    ingest(store, artifacts, "stats", stats([(1, 0, 10.0, 1), (2, 1, 20.0, 5)]))
    views.apply(store, artifacts, P, VIEW_YAML, actor=ACTOR)
    materialize(store, artifacts, online, P, "user_stats", actor=ACTOR)
    changed = VIEW_YAML.replace("source: stats", "source: SELECT * FROM stats WHERE user_id = 2")
    views.apply(store, artifacts, P, changed, actor=ACTOR)
    done = materialize(store, artifacts, online, P, "user_stats", actor=ACTOR)
    assert (done.version, done.full, done.entities_written) == (2, True, 1)
    assert _values(store, online, 1, 2) == [None, (20.0, 5)]


def test_read_checks_entities(
    store: MetadataStore, artifacts: ArtifactStore, online: OnlineStore
) -> None:
    ingest(store, artifacts, "stats", stats([(1, 0, 10.0, 1)]))
    views.apply(store, artifacts, P, VIEW_YAML, actor=ACTOR)
    with pytest.raises(ValidationError, match="keys"):
        read_online(store, online, P, "user_stats", [{"user": 1}])
    with pytest.raises(ValidationError, match="1 to"):
        read_online(store, online, P, "user_stats", [])
    assert _values(store, online, 1) == [None]


def test_reads_apply_the_ttl(
    store: MetadataStore, artifacts: ArtifactStore, online: OnlineStore
) -> None:
    ingest(store, artifacts, "stats", stats([(1, 0, 10.0, 1), (2, 3, 20.0, 5)]))
    views.apply(store, artifacts, P, VIEW_YAML, actor=ACTOR)
    materialize(store, artifacts, online, P, "user_stats", actor=ACTOR)
    entities = [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}]
    # At day 2 user 1's day-0 value is exactly the TTL (2 days) old: still used.
    found = read_online(store, online, P, "user_stats", entities, now=_us(2))
    assert [f.status for f in found] == ["found", "found", "missing"]
    # A microsecond later it has expired: its time is said, its values are not.
    found = read_online(store, online, P, "user_stats", entities, now=_us(2) + 1)
    assert [f.status for f in found] == ["expired", "found", "missing"]
    assert (found[0].values, found[0].event_time) == (None, at(0))
    assert found[1].values == {"spend": 20.0, "visits": 5}
    # By the wall clock (November 2026) every January value is long expired.
    assert [f.status for f in read_online(store, online, P, "user_stats", entities[:2])] == [
        "expired",
        "expired",
    ]


def test_settings_choose_the_backend(tmp_path: Path) -> None:
    from pydantic import ValidationError as PydanticValidationError

    from loopml.data.features.online.backends.redis import RedisOnlineStore
    from loopml.data.features.online.backends.sqlite import SqliteOnlineStore
    from loopml.settings import Settings

    embedded = Settings(home=tmp_path)
    store = open_online_store(embedded.features.online, embedded.home)
    assert isinstance(store, SqliteOnlineStore)
    store.close()
    assert (tmp_path / "online.db").is_file()
    scaled = Settings(home=tmp_path, features={"online": {"type": "redis"}})
    assert isinstance(open_online_store(scaled.features.online, scaled.home), RedisOnlineStore)
    with pytest.raises(PydanticValidationError, match="'sqlite', 'redis'"):
        Settings(home=tmp_path, features={"online": {"type": "memcached"}})
