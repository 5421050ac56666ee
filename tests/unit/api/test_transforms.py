"""/api/v1/projects/{p}/transforms through the SDK, over real Delta tables of the lake."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.errors import NotFoundError, QueryTimeoutError, ValidationError
from loopml.core.transforms import TableVersion
from loopml.data import lake
from loopml.faces.context import AppContext

BASE = "/api/v1/projects/shop/transforms"
TOTALS = "SELECT region, sum(amount) AS total FROM sales GROUP BY region"


@pytest.fixture
def ctx(http: TestClient, client: Client) -> AppContext:
    client.projects.create("shop")
    context: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
    _ingest(context, region=["n", "s"], amount=[1.0, 2.0])
    return context


def _ingest(ctx: AppContext, **columns: Any) -> int:
    table = pa.table(columns)
    return lake.ingest_arrow(ctx.store, ctx.artifacts, "shop", "sales", table, actor="t").version


def test_apply_get_list_and_runs_through_the_sdk(ctx: AppContext, client: Client) -> None:
    first = client.transforms.apply("shop", "totals", sql=TOTALS, into="totals")
    assert first.inputs == [TableVersion(table="sales", version=0)]
    assert (first.output_table, first.output_version, first.rows, first.revision) == (
        "totals",
        0,
        2,
        1,
    )
    _ingest(ctx, region=["n"], amount=[5.0])
    second = client.transforms.apply("shop", "totals")
    third = client.transforms.apply("shop", "totals", mode="append", description="grows")
    assert second.inputs == [TableVersion(table="sales", version=1)]
    assert (second.revision, third.revision, third.output_version) == (1, 2, 2)
    assert client.tables.get("shop", "totals").row_count == 4
    saved = client.transforms.get("shop", "totals")
    assert (saved.mode, saved.description, saved.sql, saved.revision) == (
        "append",
        "grows",
        TOTALS,
        2,
    )
    assert [t.name for t in client.transforms.list("shop")] == ["totals"]
    page = client.transforms.runs("shop", "totals", limit=2)
    assert [r.id for r in page.items] == [third.id, second.id]
    assert page.next_cursor is not None
    rest = client.transforms.runs("shop", "totals", limit=2, cursor=page.next_cursor)
    assert ([r.id for r in rest.items], rest.next_cursor) == ([first.id], None)


def test_define_without_running_then_apply_with_no_body(
    ctx: AppContext, client: Client, http: TestClient
) -> None:
    defined = client.transforms.define("shop", "big", sql="SELECT * FROM sales", into="big")
    assert (defined.revision, defined.mode, defined.description) == (1, "overwrite", "")
    with pytest.raises(NotFoundError):
        client.tables.get("shop", "big")
    same = client.transforms.define("shop", "big", sql="SELECT * FROM sales", into="big")
    assert same.revision == 1
    response = http.post(f"{BASE}/big/apply")
    assert response.status_code == 201, response.text
    assert response.json()["output_table"] == "big"
    assert http.post(f"{BASE}/big/apply", json={}).status_code == 201
    assert client.tables.get("shop", "big").version == 1
    moved = client.transforms.define(
        "shop", "big", sql="SELECT * FROM sales", into="bigger", description="moved"
    )
    assert (moved.revision, moved.into_table) == (2, "bigger")


def test_lineage_of_a_chain_through_the_sdk(ctx: AppContext, client: Client) -> None:
    b = client.transforms.apply("shop", "make_b", sql="SELECT * FROM sales", into="b")
    c = client.transforms.apply("shop", "make_c", sql="SELECT count(*) AS n FROM b@0", into="c")
    found = client.transforms.lineage("shop", "c")
    assert ([r.id for r in found.runs], found.sources) == (
        [c.id, b.id],
        [TableVersion(table="sales", version=0)],
    )
    assert client.transforms.lineage("shop", "c", 0) == found
    raw = client.transforms.lineage("shop", "sales")
    assert (raw.runs, raw.sources, raw.truncated) == (
        [],
        [TableVersion(table="sales", version=0)],
        False,
    )
    with pytest.raises(NotFoundError, match="no version 5"):
        client.transforms.lineage("shop", "c", 5)
    with pytest.raises(NotFoundError):
        client.transforms.lineage("shop", "nope")


def test_refusals_and_timeouts_come_back_as_their_classes(ctx: AppContext, client: Client) -> None:
    with pytest.raises(ValidationError, match="read_csv"):
        client.transforms.apply("shop", "x", sql="SELECT * FROM read_csv('/etc/passwd')", into="x")
    with pytest.raises(ValidationError, match="COPY"):
        client.transforms.define("shop", "x", sql="COPY sales TO '/tmp/loopml-x.csv'", into="x")
    with pytest.raises(QueryTimeoutError):
        client.transforms.apply(
            "shop",
            "x",
            sql="SELECT sum(a.range * b.range) AS s FROM range(100000000) a, range(1000000) b",
            into="x",
            timeout_s=0.5,
        )
    with pytest.raises(NotFoundError, match="give --sql and --into"):
        client.transforms.apply("shop", "x")
    with pytest.raises(NotFoundError):
        client.transforms.apply("shop", "x", sql="SELECT * FROM missing", into="x")
    with pytest.raises(NotFoundError):
        client.transforms.apply("nope", "x", sql="SELECT 1 AS a", into="x")
    with pytest.raises(ValidationError, match="reserved"):
        client.transforms.define("shop", "lineage", sql="SELECT 1 AS a", into="x")
    assert client.transforms.list("shop") == []
    assert [t.name for t in client.tables.list("shop")] == ["sales"]


def test_delete_keeps_the_table(ctx: AppContext, client: Client) -> None:
    run = client.transforms.apply("shop", "t", sql=TOTALS, into="totals")
    client.transforms.delete("shop", "t")
    with pytest.raises(NotFoundError):
        client.transforms.get("shop", "t")
    with pytest.raises(NotFoundError):
        client.transforms.runs("shop", "t")
    with pytest.raises(NotFoundError):
        client.transforms.delete("shop", "t")
    assert client.tables.get("shop", "totals").version == run.output_version
    assert client.transforms.lineage("shop", "totals").runs == []
    types = [e.type for e in client.events.list(type="transform.*", project="shop").items]
    assert types == ["transform.defined", "transform.applied", "transform.deleted"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/t", {"sql": "SELECT 1"}),
        ("PUT", "/t", {"sql": "", "into": "x"}),
        ("PUT", "/t", {"sql": "   ", "into": "x"}),
        ("PUT", "/t", {"sql": "SELECT 1", "into": "Bad-Table"}),
        ("PUT", "/t", {"sql": "SELECT 1", "into": "x", "mode": "merge"}),
        ("PUT", "/t", {"sql": "SELECT 1", "into": "x", "extra": 1}),
        ("PUT", "/t", {"sql": "SELECT 1", "into": "x", "description": "d" * 4001}),
        ("PUT", "/t", {"sql": "SELECT 1", "into": "x__rejected"}),
        ("PUT", "/Bad", {"sql": "SELECT 1", "into": "x"}),
        ("POST", "/t/apply", {"timeout_s": 301}),
        ("POST", "/t/apply", {"timeout_s": 0}),
        ("POST", "/t/apply", {"sql": "x" * 100_001, "into": "x"}),
        ("POST", "/t/apply", ["not", "an", "object"]),
        ("GET", "/lineage?table=sales&version=-1", None),
        ("GET", "/lineage?table=Sales", None),
        ("GET", "/lineage", None),
        ("GET", "/t/runs?cursor=bogus", None),
        ("GET", "/t/runs?limit=1001", None),
    ],
)
def test_out_of_bounds_requests_get_a_fast_422(
    ctx: AppContext, http: TestClient, method: str, path: str, body: Any
) -> None:
    response = http.request(method, BASE + path, json=body)
    # An over-long query may already be over the server's body limit (413, tests use 64 KiB).
    assert response.status_code in (413, 422), response.text
    assert response.json()["error"]["code"] in ("validation_error", "payload_too_large")
