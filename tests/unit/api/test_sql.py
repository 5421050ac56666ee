"""POST /api/v1/projects/{p}/sql through the SDK, over real Delta tables of the lake."""

from __future__ import annotations

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.errors import NotFoundError, QueryTimeoutError, ValidationError
from loopml.data import lake
from loopml.faces.context import AppContext


@pytest.fixture
def ctx(http: TestClient, client: Client) -> AppContext:
    client.projects.create("shop")
    client.projects.create("other")
    context: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
    first = pa.table({"id": [1, 2, 3], "label": [0, 1, 0], "day": ["2026-01-01"] * 3})
    more = pa.table({"id": [4, 5], "label": [1, 1], "day": ["2026-01-02"] * 2})
    lake.ingest_arrow(context.store, context.artifacts, "shop", "churn", first, actor="t")
    lake.ingest_arrow(context.store, context.artifacts, "shop", "churn", more, actor="t")
    secret = pa.table({"token": ["other-project-secret"]})
    lake.ingest_arrow(context.store, context.artifacts, "other", "secrets", secret, actor="t")
    return context


def test_json_answer_has_typed_columns_and_rows(ctx: AppContext, client: Client) -> None:
    result = client.sql("shop", "SELECT label, count(*) AS n FROM churn GROUP BY 1 ORDER BY 1")
    assert result.columns == [("label", "BIGINT"), ("n", "BIGINT")]
    assert result.rows == [[0, 2], [1, 3]]
    assert result.tables == ["churn"]
    assert result.next_offset is None


def test_a_past_version_reads_as_it_was(ctx: AppContext, client: Client) -> None:
    sql = "SELECT (SELECT count(*) FROM churn@0) AS v0, (SELECT count(*) FROM churn) AS now"
    assert client.sql("shop", sql).records() == [{"v0": 3, "now": 5}]
    with pytest.raises(NotFoundError):
        client.sql("shop", "SELECT * FROM churn@9")


def test_pages_follow_next_offset(ctx: AppContext, client: Client) -> None:
    first = client.sql("shop", "SELECT id FROM churn ORDER BY id", limit=2)
    assert first.rows == [[1], [2]]
    assert first.next_offset == 2
    last = client.sql("shop", "SELECT id FROM churn ORDER BY id", limit=2, offset=4)
    assert last.rows == [[5]]
    assert last.next_offset is None


def test_csv_and_arrow_formats(ctx: AppContext, client: Client) -> None:
    csv = client.sql("shop", "SELECT id, day FROM churn ORDER BY id", limit=2, format="csv")
    assert csv.text.splitlines() == ['"id","day"', '1,"2026-01-01"', '2,"2026-01-01"']
    assert csv.next_offset == 2
    arrow = client.sql("shop", "SELECT id FROM churn ORDER BY id", format="arrow")
    assert arrow.to_arrow().column("id").to_pylist() == [1, 2, 3, 4, 5]


def test_other_projects_tables_are_invisible(ctx: AppContext, client: Client) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.sql("shop", "SELECT * FROM secrets")
    assert "other-project-secret" not in caught.value.message
    assert client.sql("other", "SELECT count(*) FROM secrets").rows == [[1]]


def test_refusals_and_timeouts_come_back_as_their_classes(ctx: AppContext, client: Client) -> None:
    with pytest.raises(ValidationError, match="read_csv"):
        client.sql("shop", "SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(ValidationError, match="COPY"):
        client.sql("shop", "COPY churn TO '/tmp/loopml-stolen.csv'")
    with pytest.raises(QueryTimeoutError):
        client.sql(
            "shop",
            "SELECT sum(a.range * b.range) FROM range(100000000) a, range(1000000) b",
            timeout_s=0.5,
        )
    with pytest.raises(NotFoundError):
        client.sql("nope", "SELECT 1")


@pytest.mark.parametrize(
    "body",
    [
        {"query": ""},
        {"query": "x" * 100_001},
        {"query": "SELECT 1", "limit": 100_001},
        {"query": "SELECT 1", "timeout_s": 301},
        {"query": "SELECT 1", "format": "xml"},
        {"query": "SELECT 1", "extra": 1},
    ],
)
def test_out_of_bounds_bodies_get_a_fast_422(ctx: AppContext, http: TestClient, body: dict) -> None:  # type: ignore[type-arg]
    response = http.post("/api/v1/projects/shop/sql", json=body)
    # An over-long query may already be over the server's body limit (413, tests use 64 KiB).
    assert response.status_code in (413, 422), response.text
    assert response.json()["error"]["code"] in ("validation_error", "payload_too_large")
