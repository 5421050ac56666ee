"""Feast's side of ``bench/features.py``: runs inside Feast's own virtual environment.

It never imports loopml (Feast's pins conflict with loopml's). ``bench/features.py`` runs it
as ``FEAST_PYTHON bench/_feast_side.py online WORK --store sqlite|redis ...`` and reads one
JSON object from its stdout.

``online``: writes the same feature values as the loopml side (``feature_{i}`` of entity ``e``
is ``(e * 31 + i) / 7``, event time one hour before the bench's "now") to a Parquet file in
WORK, defines a Feast repo in code (``RepoConfig``: provider ``local``, offline store ``file``,
online store ``sqlite`` in WORK or ``redis`` at ``--redis``, a project name unique to the
run), ``apply``s an entity and a feature view, ``materialize``s, then times
``get_online_features(...).to_dict()`` for one entity x all features over the entity
sequence in WORK/keys.json (200 warm-up reads first, as the loopml side), and prints p50/p99
in ms, the materialize time, and the values read for the first entity (checked by the
caller against its own). On Redis, the project's keys are deleted at the end
(``FeatureStore.teardown``).

``join``: the three views the caller wrote to WORK/view_{0,1,2}.parquet (``user_id``, ``ts``,
the features) as Feast feature views over ``FileSource``s with the TTL ``--ttl-s``, and
``get_historical_features(entity_df=WORK/entities.parquet).to_df()`` (Feast's file offline
store, on dask): the time (from the entity frame in memory to the joined frame; reading the
views' Parquet is part of Feast's retrieval), the process's peak resident memory, the rows
it returned, and those of the first 2,000 entity rows it returned (with their row numbers,
``__row``) written to WORK/feast_head.parquet for the caller to compare. Feast's file store
drops an entity row whose key has rows in a view but none within the TTL (it returns nulls
only for keys absent from the view), so it returns fewer rows than it was given; the
caller reports how many.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

NOW = datetime(2026, 11, 1, tzinfo=UTC)
VIEW = "user_stats"


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


def _write_source(path: Path, entities: int, features: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = np.arange(entities, dtype=np.int64)
    columns: dict[str, Any] = {
        "user_id": pa.array(ids),
        "event_timestamp": pa.array(
            [NOW - timedelta(hours=1)] * entities, pa.timestamp("us", tz="UTC")
        ),
    }
    for i in range(features):
        columns[f"feature_{i}"] = pa.array((ids * 31 + i).astype(np.float64) / 7.0)
    pq.write_table(pa.table(columns), path)


def _store(args: argparse.Namespace, work: Path, project: str) -> Any:
    from feast import FeatureStore, RepoConfig
    from feast.infra.offline_stores.dask import DaskOfflineStoreConfig
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

    online: Any
    if args.store == "redis":
        online = RedisOnlineStoreConfig(connection_string=args.redis)
    else:
        online = SqliteOnlineStoreConfig(path=str(work / "feast_online.db"))
    config = RepoConfig(
        project=project,
        provider="local",
        registry=str(work / f"registry_{project}.db"),
        offline_store=DaskOfflineStoreConfig(type="file"),
        online_store=online,
        entity_key_serialization_version=3,
    )
    return FeatureStore(config=config)


def _definitions(source: Path, features: int) -> tuple[Any, Any]:
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name=VIEW,
        entities=[user],
        ttl=timedelta(days=7),
        schema=[Field(name=f"feature_{i}", dtype=Float64) for i in range(features)],
        source=FileSource(path=str(source), timestamp_field="event_timestamp"),
        online=True,
    )
    return user, view


def online(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    keys: list[int] = json.loads((work / "keys.json").read_text())
    source = work / "feast_source.parquet"
    if not source.exists():
        _write_source(source, args.entities, args.features)
    project = f"bench_{uuid.uuid4().hex[:8]}"
    store = _store(args, work, project)
    user, view = _definitions(source, args.features)
    store.apply([user, view])
    try:
        started = time.perf_counter()
        store.materialize(NOW - timedelta(days=1), NOW)
        materialize_s = time.perf_counter() - started
        refs = [f"{VIEW}:feature_{i}" for i in range(args.features)]

        def read(entity: int) -> dict[str, Any]:
            return store.get_online_features(
                features=refs, entity_rows=[{"user_id": entity}]
            ).to_dict()

        for key in keys[:200]:
            read(key)
        rounds = []
        for _ in range(args.rounds):
            samples = []
            for key in keys:
                began = time.perf_counter()
                read(key)
                samples.append(time.perf_counter() - began)
            rounds.append(_percentiles(samples))
        p50, p99 = min(r[0] for r in rounds), min(r[1] for r in rounds)
        first = read(keys[0])
        values = {k: v[0] for k, v in first.items() if k.startswith("feature_")}
    finally:
        if args.store == "redis":
            store.teardown()
    from importlib.metadata import version

    return {
        "feast": version("feast"),
        "store": args.store,
        "project": project,
        "entities": args.entities,
        "materialize_s": materialize_s,
        "reads": len(keys),
        "p50_ms": p50,
        "p99_ms": p99,
        "first_key": keys[0],
        "first_values": values,
    }


def join(args: argparse.Namespace) -> dict[str, Any]:
    """``get_historical_features`` over WORK/entities.parquet and WORK/view_{0,1,2}.parquet."""
    import pandas as pd
    import pyarrow.parquet as pq
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    work = Path(args.work)
    project = f"bench_{uuid.uuid4().hex[:8]}"
    args.store = "sqlite"
    store = _store(args, work, project)
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    views, refs = [], []
    for v in range(3):
        path = work / f"view_{v}.parquet"
        names = [n for n in pq.read_schema(path).names if n.startswith("v")]
        views.append(
            FeatureView(
                name=f"view_{v}",
                entities=[user],
                ttl=timedelta(seconds=args.ttl_s),
                schema=[Field(name=n, dtype=Float64) for n in names],
                source=FileSource(path=str(path), timestamp_field="ts"),
                online=False,
            )
        )
        refs += [f"view_{v}:{n}" for n in names]
    store.apply([user, *views])
    entities = pd.read_parquet(work / "entities.parquet")
    entities = entities.rename(columns={"event_time": "event_timestamp"})
    entities["__row"] = range(len(entities))
    started = time.perf_counter()  # the views' Parquet is read inside the retrieval
    result = store.get_historical_features(entity_df=entities, features=refs).to_df()
    seconds = time.perf_counter() - started
    head = result[result["__row"] < 2000].sort_values("__row").reset_index(drop=True)
    head[["__row", *(c for c in head.columns if c.startswith("v"))]].to_parquet(
        work / "feast_head.parquet"
    )
    from importlib.metadata import version

    return {
        "feast": version("feast"),
        "rows": len(result),
        "given": len(entities),
        "seconds": seconds,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["online", "join"])
    parser.add_argument("work")
    parser.add_argument("--store", choices=["sqlite", "redis"], default="sqlite")
    parser.add_argument("--redis", default="127.0.0.1:6379")
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--ttl-s", type=int, default=7 * 86400)
    args = parser.parse_args()
    with contextlib.redirect_stdout(sys.stderr):  # Feast prints its progress
        result = online(args) if args.part == "online" else join(args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
