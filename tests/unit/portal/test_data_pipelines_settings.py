"""The data, pipelines and settings pages over the real app and database: a table's page
with its schema, versions and profiles, the read-only SQL console, a pipeline's DAG and its
schedule's pause button, the run form, and API tokens, users and members."""

from __future__ import annotations

import re

import pyarrow as pa
from fastapi.testclient import TestClient

from loopml.api.context import AppContext
from loopml.data import lake

from .conftest import ADMIN, ORIGIN, VIEWER, csrf_of, log_in


def ctx_of(http: TestClient) -> AppContext:
    ctx: AppContext = http.app.state.ctx  # type: ignore[attr-defined]
    return ctx


def churn(http: TestClient, project: str = "default") -> AppContext:
    """A table ``churn`` of 250 rows in two commits."""
    ctx = ctx_of(http)
    first = pa.table({"id": list(range(200)), "plan": ["basic", "pro"] * 100,
                      "spend": [float(i % 17) for i in range(200)]})  # fmt: skip
    more = pa.table({"id": list(range(200, 250)), "plan": ["team"] * 50, "spend": [99.0] * 50})
    lake.ingest_arrow(ctx.store, ctx.artifacts, project, "churn", first, actor="t")
    lake.ingest_arrow(ctx.store, ctx.artifacts, project, "churn", more, actor="t")
    return ctx


def test_the_table_page_shows_schema_versions_and_a_histogram_per_column(
    anonymous: TestClient,
) -> None:
    churn(anonymous)
    listing = anonymous.get("/data")
    assert listing.status_code == 200, listing.text
    assert 'href="/data/default/tables/churn"' in listing.text
    assert ">250<" in listing.text
    page = anonymous.get("/data/default/tables/churn")
    assert page.status_code == 200, page.text
    assert "<h1>Table churn</h1>" in page.text
    for column, kind in (("id", "int64"), ("plan", "string"), ("spend", "double")):
        assert f"<td>{column}</td><td><code>{kind}</code></td>" in page.text
    assert page.text.count('<svg class="histogram"') == 3
    assert 'aria-label="Most frequent values of plan"' in page.text
    assert "team: 50" in page.text  # a bar's title: the value and its rows
    versions = re.findall(r"<tr><td>(\d+)</td><td>WRITE", page.text)
    assert versions == ["1", "0"]
    assert anonymous.get("/data/default/tables/nope").status_code == 404


def test_the_sql_console_pages_and_refuses_writes_and_bad_sql(anonymous: TestClient) -> None:
    ctx = churn(anonymous)
    query = {"q": "SELECT id FROM churn ORDER BY id"}
    first = anonymous.get("/data/default/sql", params=query)
    assert first.status_code == 200, first.text
    cells = re.findall(r"<tr><td>(\d+)</td></tr>", first.text)
    assert cells == [str(i) for i in range(100)]
    assert "page=2" in first.text
    second = anonymous.get("/data/default/sql", params={**query, "page": 2})
    assert re.findall(r"<tr><td>(\d+)</td></tr>", second.text) == [str(i) for i in range(100, 200)]
    last = anonymous.get("/data/default/sql", params={**query, "page": 3})
    assert len(re.findall(r"<tr><td>(\d+)</td></tr>", last.text)) == 50
    assert "page=4" not in last.text
    for write in ("DROP TABLE churn", "INSERT INTO churn VALUES (1, 'x', 1.0)"):
        refused = anonymous.get("/data/default/sql", params={"q": write})
        assert refused.status_code == 422, refused.text
        assert 'class="error" role="alert"' in refused.text
    assert lake.get_table(ctx.store, ctx.artifacts, "default", "churn").row_count == 250
    bad = anonymous.get("/data/default/sql", params={"q": "SELEKT nothing"})
    assert bad.status_code == 422
    assert "syntax" in bad.text.lower()
    missing = anonymous.get("/data/default/sql", params={"q": "SELECT * FROM nowhere"})
    assert missing.status_code == 404
    assert "nowhere" in missing.text


def test_a_viewer_reads_data_of_its_project_only(secured: TestClient) -> None:
    churn(secured)
    log_in(secured, VIEWER)
    assert secured.get("/data/default/tables/churn").status_code == 200
    ctx = ctx_of(secured)
    from loopml import projects

    projects.create(ctx.store, "hidden", actor="t")
    assert secured.get("/data?project=hidden").status_code == 404
    assert secured.get("/data/hidden/sql", params={"q": "SELECT 1"}).status_code == 404
