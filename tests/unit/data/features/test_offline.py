"""Point-in-time training sets on hand-built timelines: never a future value, TTL expiry,
several entities and views, and the dataset version with its lineage."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from loopml.core.datasets import SplitSpec
from loopml.core.errors import NotFoundError, ValidationError
from loopml.data import datasets
from loopml.data._sandbox import QueryLimits, open_connection
from loopml.data.features import offline, views
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events

from .conftest import ACTOR, VIEW_YAML, P, at, ingest, stats

ORDERS_YAML = """\
name: user_orders
entities: [user_id]
event_time: ts
ttl: 30d
source: SELECT user_id, ts, amount AS last_order FROM orders
features: [last_order]
"""


def labels(rows: list[tuple[int, float, int]]) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int64()),
            "event_time": pa.array([at(r[1]) for r in rows], pa.timestamp("us", tz="UTC")),
            "label": pa.array([r[2] for r in rows], pa.int64()),
        }
    )


@pytest.fixture
def timeline(store: MetadataStore, artifacts: ArtifactStore) -> None:
    # user 1: spend 10 at day 0, 11 at day 3 (after the label at day 2), 12 at day 10.
    # user 2: spend 20 at day 0 only (2-day TTL: gone by day 2.5).
    ingest(
        store,
        artifacts,
        "stats",
        stats([(1, 0, 10.0, 1), (1, 3, 11.0, 2), (1, 10, 12.0, 3), (2, 0, 20.0, 5)]),
    )
    ingest(
        store,
        artifacts,
        "orders",
        pa.table(
            {
                "user_id": pa.array([1, 2], pa.int64()),
                "ts": pa.array([at(1), at(5)], pa.timestamp("us", tz="UTC")),
                "amount": [7.5, 9.0],
            }
        ),
    )
    ingest(
        store,
        artifacts,
        "labels",
        labels([(1, 2, 0), (1, 3, 1), (1, 11, 1), (2, 1, 0), (2, 2.5, 1), (3, 4, 0), (1, -1, 0)]),
    )
    views.apply(store, artifacts, P, VIEW_YAML, actor=ACTOR)
    views.apply(store, artifacts, P, ORDERS_YAML, actor=ACTOR)


def _by_key(table: pa.Table) -> dict[tuple[int, datetime], dict[str, object]]:
    return {(r["user_id"], r["event_time"]): r for r in table.to_pylist()}


@pytest.mark.usefixtures("timeline")
def test_point_in_time_values(store: MetadataStore, artifacts: ArtifactStore) -> None:
    made = offline.training_set(
        store,
        artifacts,
        P,
        "churn_train",
        entities="labels",
        views=["user_stats", "user_orders"],
        actor=ACTOR,
    )
    assert made.created
    assert made.row_count == 7
    rows = _by_key(datasets.read_version(store, artifacts, P, "churn_train"))
    got = {k: (r["spend"], r["visits"], r["last_order"], r["label"]) for k, r in rows.items()}
    assert got == {
        # day 2: the day-3 update is in the future, so day 0's value (age 2 d = TTL: kept).
        (1, at(2)): (10.0, 1, 7.5, 0),
        # exactly at an update's time: that update is used.
        (1, at(3)): (11.0, 2, 7.5, 1),
        (1, at(11)): (12.0, 3, 7.5, 1),
        (2, at(1)): (20.0, 5, None, 0),
        # day 2.5: day 0's value is 2.5 days old, past the 2-day TTL: null.
        (2, at(2.5)): (None, None, None, 1),
        # an entity no view knows, and a time before every value: nulls, rows kept.
        (3, at(4)): (None, None, None, 0),
        (1, at(-1)): (None, None, None, 0),
    }
    version = datasets.get_version(store, P, "churn_train")
    assert {s.table for s in version.sources} == {"stats", "orders", "labels"}
    assert "user_stats@1" in version.source
    assert "user_orders@1" in version.source
    with store.session() as session:
        found = events.list_(session, type="feature_training_set.created", project=P).items
    assert found[0].payload["views"] == [
        {"view": "user_stats", "version": 1},
        {"view": "user_orders", "version": 1},
    ]
    again = offline.training_set(
        store,
        artifacts,
        P,
        "churn_train",
        entities="labels",
        views=["user_stats", "user_orders"],
        actor=ACTOR,
    )
    assert (again.created, again.version) == (False, 1)


@pytest.mark.usefixtures("timeline")
def test_entities_from_sql_and_errors(store: MetadataStore, artifacts: ArtifactStore) -> None:
    made = offline.training_set(
        store,
        artifacts,
        P,
        "late",
        views=["user_stats"],
        event_time="at",
        actor=ACTOR,
        entities="SELECT user_id, event_time AS at, label FROM labels WHERE user_id = 1",
    )
    assert made.row_count == 4
    with pytest.raises(ValidationError) as missing:
        offline.training_set(
            store,
            artifacts,
            P,
            "x",
            entities="SELECT label, event_time FROM labels",
            views=["user_stats"],
            actor=ACTOR,
        )
    assert missing.value.details["missing"] == ["user_id"]
    with pytest.raises(ValidationError, match="already has"):
        offline.training_set(
            store,
            artifacts,
            P,
            "x",
            views=["user_stats"],
            actor=ACTOR,
            entities="SELECT user_id, event_time, label AS spend FROM labels",
        )
    with pytest.raises(ValidationError, match="distinct"):
        offline.training_set(
            store,
            artifacts,
            P,
            "x",
            entities="labels",
            views=["user_stats", "user_stats"],
            actor=ACTOR,
        )


@pytest.mark.parametrize("where", ["in memory", "sandbox"])
def test_the_join_is_planned_as_an_asof_join_whatever_the_estimates(where: str) -> None:
    # Registered Arrow tables are estimated at ~1 row; DuckDB then plans small ASOF joins
    # as a nested loop, which is quadratic on real inputs (64 s for 200k x 50k rows). Both
    # the in-memory join and the warehouse's connection (training sets) plan the ASOF join.
    con = offline.connect() if where == "in memory" else open_connection(QueryLimits())
    try:
        keys = pa.array([1, 2], pa.int64())
        stamps = pa.array([at(0), at(1)], pa.timestamp("us", tz="UTC"))
        con.register("e", pa.table({"k": keys, "t": stamps}))
        con.register("v", pa.table({"k": keys, "t": stamps, "x": [1.0, 2.0]}))
        plan = con.sql(
            "EXPLAIN SELECT * FROM e ASOF LEFT JOIN v ON e.k = v.k AND e.t >= v.t"
        ).fetchall()[0][1]
    finally:
        con.close()
    assert "ASOF_JOIN" in plan
    assert "NESTED_LOOP_JOIN" not in plan


@pytest.mark.usefixtures("timeline")
def test_entities_from_a_dataset_version(store: MetadataStore, artifacts: ArtifactStore) -> None:
    datasets.create_version(store, artifacts, P, "label_set", "labels", actor=ACTOR)
    split = SplitSpec(eval_fraction=0.3, seed=1)
    datasets.create_version(store, artifacts, P, "label_set", "labels", split=split, actor=ACTOR)
    from_table = offline.training_set(
        store, artifacts, P, "by_table", entities="labels", views=["user_stats"], actor=ACTOR
    )
    made = offline.training_set(
        store,
        artifacts,
        P,
        "by_dataset",
        entities_dataset="label_set@1",
        views=["user_stats"],
        actor=ACTOR,
    )
    assert made.row_count == 7
    # The same entity rows give the same training set, whichever way they came.
    assert made.content_hash == from_table.content_hash
    version = datasets.get_version(store, P, "by_dataset")
    assert "onto dataset label_set@1" in version.source
    # The dataset's table versions are the result's too (vacuum keeps them; lineage).
    labels_version = datasets.get_version(store, P, "label_set@1").sources
    assert set(labels_version) <= set(version.sources)
    assert {s.table for s in version.sources} == {"stats", "labels"}

    held_out = datasets.read_version(store, artifacts, P, "label_set@2", "eval")
    evals = offline.training_set(
        store,
        artifacts,
        P,
        "by_eval",
        entities_dataset="label_set",  # the newest: version 2, which has the split
        entities_part="eval",
        views=["user_stats"],
        actor=ACTOR,
    )
    assert evals.row_count == held_out.num_rows < 7
    assert "onto dataset label_set@2 (eval)" in datasets.get_version(store, P, "by_eval").source
    with store.session() as session:
        found = events.list_(session, type="feature_training_set.created", project=P).items
    used = {e.payload["dataset"]: e.payload["entities_dataset"] for e in found}
    assert used["by_table"] is None
    assert used["by_dataset"] == {
        "dataset": "label_set",
        "version": 1,
        "part": "all",
        "content_hash": datasets.get_version(store, P, "label_set@1").content_hash,
    }
    split_of_2 = datasets.get_version(store, P, "label_set@2").split
    assert split_of_2 is not None
    assert used["by_eval"]["content_hash"] == split_of_2.eval_hash  # type: ignore[index]


@pytest.mark.usefixtures("timeline")
@pytest.mark.parametrize(
    ("given", "error", "says"),
    [
        ({"entities": "labels", "entities_dataset": "label_set"}, ValidationError, "one way"),
        ({}, ValidationError, "one way"),
        ({"entities": "labels", "entities_part": "eval"}, ValidationError, "entities_dataset"),
        ({"entities_dataset": "Bad Name"}, ValidationError, "invalid dataset reference"),
        ({"entities_dataset": "label_set@9"}, NotFoundError, "9"),
        ({"entities_dataset": "nothing"}, NotFoundError, "nothing"),
        ({"entities_dataset": "label_set", "entities_part": "train"}, NotFoundError, "no train"),
        ({"entities_dataset": "label_set", "entities_part": "x"}, ValidationError, "invalid part"),
    ],
)
def test_bad_entity_datasets_are_refused(
    store: MetadataStore,
    artifacts: ArtifactStore,
    given: dict[str, str],
    error: type[Exception],
    says: str,
) -> None:
    datasets.create_version(store, artifacts, P, "label_set", "labels", actor=ACTOR)
    with pytest.raises(error, match=says):
        offline.training_set(store, artifacts, P, "x", views=["user_stats"], actor=ACTOR, **given)  # type: ignore[arg-type]
    assert [d.name for d in datasets.list_datasets(store, P).items] == ["label_set"]
