"""The feature store through the API and the SDK: views applied and versioned, errors at the
edge (404, 422), a point-in-time training set, materializing, and online reads (GET one
entity, POST a batch), on SQLite and PostgreSQL metadata with the embedded online store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.client.features import MATERIALIZE_WAIT_S
from loopml.core.errors import NotFoundError, ValidationError

P = "default"
FEATURES = "/api/v1/projects/default/features"
SPEC = """\
name: user_stats
entities: [user_id]
event_time: ts
ttl: 700w
source: stats
features: [spend]
"""


def _day(n: int) -> datetime:
    return datetime(2026, 1, n, tzinfo=UTC)


def _ingest(client: Client, tmp_path: Path, table: str, data: pa.Table) -> None:
    path = tmp_path / f"{table}.parquet"
    pq.write_table(data, path)
    client.tables.ingest_file(P, table, path)


@pytest.fixture
def tables(client: Client, tmp_path: Path) -> None:
    stamp = pa.timestamp("us", tz="UTC")
    stats = {"user_id": [1, 1, 2], "ts": pa.array([_day(1), _day(5), _day(2)], stamp)}
    _ingest(client, tmp_path, "stats", pa.table({**stats, "spend": [1.0, 5.0, 2.0]}))
    labels = {"user_id": [1, 2], "event_time": pa.array([_day(3), _day(3)], stamp)}
    _ingest(client, tmp_path, "labels", pa.table({**labels, "label": [0, 1]}))


@pytest.mark.usefixtures("tables")
def test_views_training_set_and_online(client: Client, http: TestClient) -> None:
    applied = client.features.apply(SPEC)
    assert (applied.created, applied.view.version) == (True, 1)
    assert client.features.apply(SPEC).created is False
    assert client.features.apply(SPEC.replace("700w", "800w")).view.version == 2
    assert [v.name for v in client.features.list()] == ["user_stats"]
    assert client.features.show("user_stats", version=1).spec.ttl_s == 700 * 7 * 86400

    made = client.features.training_set("train", entities="labels", views=["user_stats"])
    assert (made.created, made.row_count) == (True, 2)
    body = {"dataset": "train", "entities": "labels", "views": ["user_stats"]}
    again = http.post(f"{FEATURES}/training-sets", json=body)
    assert (again.status_code, again.json()["created"]) == (200, False)
    rows = client.datasets.read(P, "train").to_pylist()
    assert sorted((r["user_id"], r["spend"]) for r in rows) == [(1, 1.0), (2, 2.0)]

    done = client.features.materialize("user_stats")
    assert (done.full, done.entities_written) == (True, 2)
    assert client.features.materialize("user_stats").entities_written == 0
    assert client.features.get("user_stats", 1).values == {"spend": 5.0}
    assert client.features.get("user_stats", 9).values is None
    assert client.features.get("user_stats", 9).status == "missing"
    many = client.features.get_many("user_stats", [{"user_id": 2}, {"user_id": "1"}])
    assert [m.values for m in many] == [{"spend": 2.0}, {"spend": 5.0}]
    shown = http.get(f"{FEATURES}/user_stats", params={"entity": "2"}).json()
    assert shown["items"][0]["values"] == {"spend": 2.0}
    assert client.features.show("user_stats").materialized is not None
    kinds = [
        e["type"]
        for kind in ("feature_view.*", "feature_training_set.*")
        for e in http.get("/api/v1/events", params={"type": kind}).json()["items"]
    ]
    assert kinds.count("feature_view.applied") == 2
    assert "feature_training_set.created" in kinds
    assert "feature_view.materialized" in kinds


@pytest.mark.usefixtures("tables")
def test_errors_at_the_edge(client: Client, http: TestClient) -> None:
    with pytest.raises(NotFoundError):
        client.features.apply(SPEC.replace("source: stats", "source: nowhere"))
    answer = http.post(f"{FEATURES}/views", json={"spec": SPEC.replace("[spend]", "[spend, age]")})
    assert answer.status_code == 422
    assert answer.json()["error"]["details"]["missing"] == ["age"]
    assert (
        http.post(
            f"{FEATURES}/views", json={"spec": "!!python/object/apply:os.getpid []"}
        ).status_code
        == 422
    )
    with pytest.raises(NotFoundError):
        client.features.show("user_stats")
    with pytest.raises(NotFoundError):
        client.features.get("user_stats", 1)
    composite = SPEC.replace("[user_id]", "[user_id, spend]").replace("[spend]", "[ts2]")
    composite = composite.replace("source: stats", "source: SELECT *, ts AS ts2 FROM stats")
    client.features.apply(composite)
    with pytest.raises(ValidationError, match="keyed by"):
        client.features.get("user_stats", 1)
    # A name no view can have matches no route (as /runs/{id} takes only run ids).
    bad = http.get(f"{FEATURES}/Bad-Name", params={"entity": "1"})
    assert bad.status_code == 404
    assert bad.json()["error"]["code"] == "not_found"


def test_the_online_read_never_takes_the_other_feature_paths(http: TestClient) -> None:
    # GET /features/training-sets is no lookup of a view of that name (the fuzz found it
    # answering 422 "entity: Field required"): a method the path does not serve is a 405.
    answer = http.get(f"{FEATURES}/training-sets")
    assert answer.status_code == 405, answer.text
    assert http.get(f"{FEATURES}/views").status_code == 200
    # A view cannot be named like the list route that would shadow it.
    reserved = http.post(f"{FEATURES}/views", json={"spec": SPEC.replace("user_stats", "views")})
    assert reserved.status_code == 422
    assert "reserved" in reserved.json()["error"]["message"]
    assert http.get(f"{FEATURES}/nothing_here", params={"entity": "1"}).status_code == 404


@pytest.mark.usefixtures("tables")
def test_a_training_set_from_a_dataset_version(client: Client, http: TestClient) -> None:
    client.features.apply(SPEC)
    client.datasets.create(P, "label_set", "labels")
    made = client.features.training_set(
        "train", entities_dataset="label_set@1", views=["user_stats"]
    )
    assert (made.created, made.row_count) == (True, 2)
    assert "onto dataset label_set@1" in made.source
    assert {s.table for s in made.sources} == {"stats", "labels"}
    rows = client.datasets.read(P, "train").to_pylist()
    assert sorted((r["user_id"], r["spend"]) for r in rows) == [(1, 1.0), (2, 2.0)]
    both = {"dataset": "t", "entities": "labels", "entities_dataset": "label_set", "views": []}
    for body, says in [
        ({**both, "views": ["user_stats"]}, "one way"),
        (
            {"dataset": "t", "entities_dataset": "label_set@x", "views": ["user_stats"]},
            "invalid dataset reference",
        ),
        ({**both, "entities_part": "half", "views": ["user_stats"]}, "entities_part"),
    ]:
        answer = http.post(f"{FEATURES}/training-sets", json=body)
        assert answer.status_code == 422, answer.text
        assert says in answer.text
    split = http.post(
        f"{FEATURES}/training-sets",
        json={
            "dataset": "t",
            "entities_dataset": "label_set",
            "entities_part": "eval",
            "views": ["user_stats"],
        },
    )
    assert split.status_code == 404  # no frozen split to take a part of
    assert "no train/eval split" in split.json()["error"]["message"]


def test_materialize_waits_longer_than_the_client_timeout() -> None:
    """A large view takes minutes to materialize: the call waits up to an hour for the
    answer, whatever the client's own (30 s) timeout, which still applies to connecting."""
    seen: list[dict[str, float]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        body = {"view": "v", "version": 1, "full": True, "rows_read": 0, "entities_written": 0}
        return httpx.Response(200, json=body | {"watermark": None})

    http = httpx.Client(base_url="http://loopml.test", transport=httpx.MockTransport(answer))
    client = Client(http=http)
    assert client.features.materialize("v").full is True
    assert seen[0]["read"] == MATERIALIZE_WAIT_S == 3600
    assert seen[0]["connect"] == http.timeout.connect
