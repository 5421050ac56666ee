"""``refill``: an empty online store (a restored platform's) filled again from the lake,
the view's recorded state left alone (SQLite and the real Redis)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.core.features import RedisOnlineStoreConfig, SqliteOnlineStoreConfig
from loopml.data.features import views
from loopml.data.features.materialize import materialize, read_online, refill
from loopml.data.features.online import OnlineStore, namespace, open_online_store
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, feature_views

from .conftest import ACTOR, VIEW_YAML, P, at, ingest, stats


def _open(kind: str, tmp: Path, request: pytest.FixtureRequest) -> OnlineStore:
    if kind == "sqlite":
        return open_online_store(SqliteOnlineStoreConfig(), tmp)
    url = request.getfixturevalue("redis_server")
    prefix = f"loopml-test:{uuid.uuid4().hex}"
    return open_online_store(RedisOnlineStoreConfig(type="redis", url=url, key_prefix=prefix), tmp)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def two(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[OnlineStore, ...]]:
    """The backed-up platform's online store and the restored one's, both empty."""
    stores = (
        _open(request.param, tmp_path / "before", request),
        _open(request.param, tmp_path / "after", request),
    )
    yield stores
    for store in stores:
        store.delete_namespace(namespace(P, "user_stats"))
        store.close()


def _read(store: MetadataStore, online: OnlineStore) -> list[object]:
    entities = [{"user_id": u} for u in (1, 2, 3)]
    now = int(at(3).timestamp() * 1_000_000)
    return [f.model_dump() for f in read_online(store, online, P, "user_stats", entities, now=now)]


def test_refill_answers_what_materialize_wrote_and_records_nothing(
    store: MetadataStore, artifacts: ArtifactStore, two: tuple[OnlineStore, OnlineStore]
) -> None:
    before, after = two
    ingest(store, artifacts, "stats", stats([(1, 0, 10.0, 1), (1, 2, 12.0, 2), (2, 1, 20.0, 5)]))
    views.apply(store, artifacts, P, VIEW_YAML, actor=ACTOR)
    materialize(store, artifacts, before, P, "user_stats", actor=ACTOR)
    with store.session() as session:
        assert feature_views.materialized(session) == [(P, "user_stats", 1)]
    state = views.get(store, P, "user_stats").materialized

    assert refill(store, artifacts, after, P, "user_stats", 1) == 2
    assert _read(store, after) == _read(store, before)
    assert views.get(store, P, "user_stats").materialized == state
