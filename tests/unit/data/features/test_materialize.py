"""Materializing views into the online store (SQLite and the real Redis), full and
incremental, and reading entities back."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from loopml.core.clock import utcnow
from loopml.core.errors import ConflictError, ValidationError
from loopml.core.features import RedisOnlineStoreConfig, SqliteOnlineStoreConfig
from loopml.data import lake
from loopml.data.features import views
from loopml.data.features.materialize import materialize, read_online
from loopml.data.features.online import OnlineRow, OnlineStore, namespace, open_online_store
from loopml.data.features.online.backends.sqlite import SqliteOnlineStore
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events, feature_views

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


def _nullable_stats(
    rows: list[tuple[int | None, float | None, float | None, int | None]],
) -> pa.Table:
    """``stats`` rows where any value may be ``None``: (user_id, day, spend, visits)."""
    return pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int64()),
            "ts": pa.array(
                [None if r[1] is None else at(r[1]) for r in rows],
                pa.timestamp("us", tz="UTC"),
            ),
            "spend": pa.array([r[2] for r in rows], pa.float64()),
            "visits": pa.array([r[3] for r in rows], pa.int64()),
        }
    )


def test_a_null_feature_in_the_newest_row_is_kept_and_rows_without_keys_are_not_written(
    store: MetadataStore, artifacts: ArtifactStore, online: OnlineStore
) -> None:
    rows: list[tuple[int | None, float | None, float | None, int | None]] = [
        (1, 0, 10.0, 1),
        (1, 2, None, 2),  # user 1's newest spend is unknown: not the day-0 value
        (2, 1, 20.0, None),
        (2, 1, 20.0, None),  # an exact duplicate: one entity, one value
        (None, 2, 99.0, 9),  # no key: read, never written
        (3, None, 30.0, 3),  # no time: read, never written
        (4, 1, 40.0, 4),
        (4, 1, 41.0, 5),  # tied on time: one row or the other, never a mix of both
    ]
    ingest(store, artifacts, "stats", _nullable_stats(rows))
    views.apply(store, artifacts, P, VIEW_YAML, actor=ACTOR)
    done = materialize(store, artifacts, online, P, "user_stats", actor=ACTOR)
    assert (done.rows_read, done.entities_written, done.watermark) == (8, 3, at(2))
    assert _values(store, online, 1, 2, 3) == [(None, 2), (20.0, None), None]
    assert _values(store, online, 4)[0] in [(40.0, 4), (41.0, 5)]


@pytest.mark.parametrize(
    "kind",
    [
        pa.timestamp("us", tz="UTC"),
        pa.timestamp("us", tz="America/New_York"),
        pa.timestamp("us"),
        pa.timestamp("ms", tz="Europe/Berlin"),
        pa.date32(),
    ],
    ids=str,
)
def test_incremental_runs_take_exactly_the_rows_after_the_watermark(
    store: MetadataStore, artifacts: ArtifactStore, tmp_path: Path, kind: pa.DataType
) -> None:
    """The watermark's condition is written per type of event time (a timestamp in µs is
    compared as itself, so the scan can skip old files); whatever the type, a row at the
    watermark is not read again and the smallest step after it is."""
    step = timedelta(days=1) if pa.types.is_date(kind) else timedelta(milliseconds=1)
    if kind == pa.timestamp("us") or kind == pa.timestamp("us", tz="America/New_York"):
        step = timedelta(microseconds=1)

    def rows(items: list[tuple[int, datetime, float]]) -> pa.Table:
        times: list[object] = [t.replace(tzinfo=None) for _, t, _ in items]
        if pa.types.is_date(kind):
            times = [t.date() for _, t, _ in items]
        elif kind.tz is not None:
            times = [t for _, t, _ in items]
        return pa.table(
            {
                "user_id": pa.array([i[0] for i in items], pa.int64()),
                "ts": pa.array(times, kind),
                "spend": pa.array([i[2] for i in items], pa.float64()),
                "visits": pa.array([1] * len(items), pa.int64()),
            }
        )

    online = open_online_store(SqliteOnlineStoreConfig(), tmp_path)
    ingest(store, artifacts, "stats", rows([(1, at(0), 10.0), (2, at(1), 20.0)]))
    views.apply(store, artifacts, P, VIEW_YAML.replace("ttl: 2d", "ttl: 30d"), actor=ACTOR)
    first = materialize(store, artifacts, online, P, "user_stats", actor=ACTOR)
    assert (first.entities_written, first.watermark) == (2, at(1))
    # At the watermark (not read again), then the smallest step after it.
    ingest(store, artifacts, "stats", rows([(3, at(1), 30.0), (1, at(1) + step, 11.0)]))
    more = materialize(store, artifacts, online, P, "user_stats", actor=ACTOR)
    assert (more.full, more.rows_read, more.entities_written) == (False, 1, 1)
    assert more.watermark == at(1) + step
    entities = [{"user_id": u} for u in (1, 2, 3)]
    found = read_online(store, online, P, "user_stats", entities, now=_us(3))
    assert [f.values and f.values["spend"] for f in found] == [11.0, 20.0, None]
    online.close()


_MEMORY_PROBE = """
import sys
from datetime import UTC, datetime, timedelta
import numpy as np
import pyarrow as pa
from pathlib import Path
from loopml.core.features import SqliteOnlineStoreConfig
from loopml.data import lake
from loopml.data.features import views
from loopml.data.features.materialize import materialize
from loopml.data.features.online import open_online_store
from loopml.data.features.online.backends.sqlite import SqliteOnlineStore
from loopml.storage import LocalArtifactStore
from loopml.store import MetadataStore

home = Path(sys.argv[1])
store = MetadataStore(f"sqlite:///{home / 'meta.db'}")
store.upgrade()
artifacts = LocalArtifactStore(home / "artifacts")
rows, features = 400_000, 20
rng = np.random.default_rng(3)
start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1e6)
columns = {
    "user_id": pa.array(rng.permutation(rows), pa.int64()),
    "ts": pa.array(rng.integers(start, start + 10**12, rows), pa.timestamp("us", tz="UTC")),
}
columns |= {f"f{i}": pa.array(rng.random(rows)) for i in range(features)}
table = pa.table(columns)
view_bytes = table.nbytes
names_all, arrays = table.column_names, table.columns
lake.ingest_arrow(store, artifacts, "default", "wide", table, actor="probe")
del table, columns
names = ", ".join(f"f{i}" for i in range(features))
spec = f"name: wide\\nentities: [user_id]\\nevent_time: ts\\nttl: 30d\\nsource: wide\\n"
spec += f"features: [{names}]\\n"
views.apply(store, artifacts, "default", spec, actor="probe")


def vm(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field))


online = SqliteOnlineStore(SqliteOnlineStoreConfig(), home / "online.db")
# A small view first: the imports and the query worker are warm before measuring.
lake.ingest_arrow(store, artifacts, "default", "small", pa.table(
    {k: v.slice(0, 10) for k, v in zip(names_all, arrays)}), actor="probe")
views.apply(store, artifacts, "default", spec.replace("wide", "small"), actor="probe")
materialize(store, artifacts, online, "default", "small", actor="probe")
before = vm("VmRSS:")
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # resets the peak (VmHWM) to the current resident size
done = materialize(store, artifacts, online, "default", "wide", actor="probe", chunk_rows=5000)
print(view_bytes, vm("VmHWM:") - before, done.entities_written)
"""


def test_materialize_holds_a_batch_not_the_view(tmp_path: Path) -> None:
    """In a process of its own (its peak resident memory is its own): a run over a view of
    70 MB grows the process by a few batches of 5,000 entities (17 MB measured), not by the
    view (reading it whole, as materialize did before, grew it by 321 MB)."""
    probe = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    view_bytes, peak, written = (int(n) for n in probe.stdout.split())
    assert written == 400_000
    assert view_bytes > 60 * 2**20
    assert peak < 40 * 2**20, f"the run grew the process by {peak} bytes"


def _hold(store: MetadataStore, holder: str, *, now: datetime) -> None:
    with store.session() as session:
        feature_views.take_materialize_lease(
            session, P, "user_stats", holder=holder, now=now, lease_s=60
        )


def test_one_run_of_a_view_at_a_time(
    store: MetadataStore, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    online = open_online_store(SqliteOnlineStoreConfig(), tmp_path)
    ingest(store, artifacts, "stats", stats([(1, 0, 10.0, 1)]))
    views.apply(store, artifacts, P, VIEW_YAML, actor=ACTOR)
    _hold(store, "another-run", now=utcnow())
    with pytest.raises(ConflictError, match="being materialized by another run"):
        materialize(store, artifacts, online, P, "user_stats", actor=ACTOR)
    assert views.get(store, P, "user_stats").materialized is None
    # A lease that lapsed (its run died) frees the view; a run that ends frees it too.
    _hold(store, "another-run", now=utcnow() - timedelta(hours=1))
    assert materialize(store, artifacts, online, P, "user_stats", actor=ACTOR).entities_written == 1
    _hold(store, "a-third-run", now=utcnow())
    online.close()


def test_a_failed_run_frees_the_view(
    store: MetadataStore, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    online = open_online_store(SqliteOnlineStoreConfig(), tmp_path)
    ingest(store, artifacts, "stats", stats([(1, 0, 10.0, 1)]))
    views.apply(store, artifacts, P, VIEW_YAML, actor=ACTOR)
    lake.ingest_arrow(
        store,
        artifacts,
        P,
        "stats",
        stats([(1, 1, 5.0, 1)]).drop(["visits"]),
        mode="overwrite",
        actor=ACTOR,
    )
    with pytest.raises(ValidationError, match="visits"):
        materialize(store, artifacts, online, P, "user_stats", actor=ACTOR)
    _hold(store, "the-next-run", now=utcnow())  # free: no ConflictError
    online.close()


def test_a_run_that_lost_its_lease_records_nothing(
    store: MetadataStore, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    class Overtaken(SqliteOnlineStore):
        """While the run writes, its lease lapses and another run takes the view."""

        def write_batch(self, namespace: str, rows: Sequence[OnlineRow]) -> None:
            _hold(store, "a-later-run", now=utcnow() + timedelta(hours=1))
            super().write_batch(namespace, rows)

    online = Overtaken(SqliteOnlineStoreConfig(), tmp_path / "online.db")
    ingest(store, artifacts, "stats", stats([(1, 0, 10.0, 1)]))
    views.apply(store, artifacts, P, VIEW_YAML, actor=ACTOR)
    with pytest.raises(ConflictError, match="lost its lease"):
        materialize(store, artifacts, online, P, "user_stats", actor=ACTOR)
    assert views.get(store, P, "user_stats").materialized is None
    online.close()
