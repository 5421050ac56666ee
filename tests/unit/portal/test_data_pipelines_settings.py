"""The data, pipelines and settings pages over the real app and database: a table's page
with its schema, versions and profiles, the read-only SQL console, a pipeline's DAG and its
schedule's pause button, the run form, and API tokens, users and members."""

from __future__ import annotations

import re

import pyarrow as pa
from fastapi.testclient import TestClient

from loopml.api.context import AppContext
from loopml.data import lake
from loopml.pipelines import automation_service, service

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


SPEC = """\
name: greeter
description: Says hello, then shouts it.
inputs:
  who: {type: string, default: world}
steps:
  - name: greet
    python: portal_no_such_module:greet
    with: {name: "${{ inputs.who }}"}
  - name: shout
    python: portal_no_such_module:shout
    needs: [greet]
  - name: wave
    python: portal_no_such_module:wave
"""


def greeter(http: TestClient) -> AppContext:
    """The ``greeter`` pipeline (three steps, one needing another) and its paused-able
    schedule."""
    ctx = ctx_of(http)
    service.apply_spec(ctx.store, "default", SPEC, actor="t")
    automation_service.create_schedule(
        ctx.store, "default", name="nightly", pipeline="greeter", cron="0 3 * * *", actor="t"
    )
    return ctx


def test_a_pipeline_and_its_run_show_a_dag_with_a_box_per_step(anonymous: TestClient) -> None:
    ctx = greeter(anonymous)
    listing = anonymous.get("/pipelines")
    assert listing.status_code == 200, listing.text
    assert 'href="/pipelines/default/greeter"' in listing.text
    assert "nightly" in listing.text
    page = anonymous.get("/pipelines/default/greeter")
    assert page.status_code == 200, page.text
    assert re.findall(r'data-step="(\w+)"', page.text) == ["greet", "wave", "shout"]
    assert page.text.count('class="dag-edge"') == 1  # shout needs greet
    assert page.text.count(">planned</text>") == 3
    run = service.start_run(ctx.store, "default", "greeter", {"who": "ada"}, actor="t")
    shown = anonymous.get(f"/pipelines/default/runs/{run.id}")
    assert shown.status_code == 200, shown.text
    assert sorted(re.findall(r'data-step="(\w+)"', shown.text)) == ["greet", "shout", "wave"]
    states = re.findall(r'<g class="dag-step dag-(\w+)"', shown.text)
    assert len(states) == 3
    for state in states:  # the state is written in the box, not shown by colour alone
        assert f'class="dag-state">{state}</text>' in shown.text
    log = anonymous.get(f"/pipelines/default/runs/{run.id}", params={"step": "greet"})
    assert log.status_code == 200
    assert "Log of greet" in log.text
    assert anonymous.get("/pipelines/default/runs/" + "0" * 32).status_code == 404


def test_the_run_button_queues_a_run_and_refuses_bad_inputs(anonymous: TestClient) -> None:
    ctx = greeter(anonymous)
    token = csrf_of(anonymous.get("/pipelines/default/greeter").text)
    url = "/portal/pipelines/default/greeter/run"
    headers = {"Origin": ORIGIN}
    for bad, why in (
        ('{"who": ', "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"nobody": 1}', "no input"),
    ):
        answer = anonymous.post(url, data={"inputs": bad, "csrf_token": token}, headers=headers)
        assert answer.status_code == 422, answer.text
        assert why in answer.text
        assert bad.replace('"', "&#34;") in answer.text  # the form keeps what was typed
    assert service.list_runs(ctx.store, "default").items == []
    made = anonymous.post(
        url, data={"inputs": '{"who": "ada"}', "csrf_token": token}, headers=headers,
        follow_redirects=False,
    )  # fmt: skip
    assert made.status_code == 303, made.text
    runs = service.list_runs(ctx.store, "default").items
    assert [r.inputs for r in runs] == [{"who": "ada"}]
    assert made.headers["location"] == f"/pipelines/default/runs/{runs[0].id}"


def test_pause_and_resume_need_an_editor(secured: TestClient) -> None:
    ctx = greeter(secured)
    log_in(secured, VIEWER)
    page = secured.get("/pipelines?project=default")
    assert page.status_code == 200
    assert "/schedules/nightly/pause" not in page.text  # no button for a viewer
    assert '/run"' not in secured.get("/pipelines/default/greeter").text
    token = csrf_of(page.text)
    pause = "/portal/pipelines/default/schedules/nightly/pause"
    refused = secured.post(pause, data={"csrf_token": token}, headers={"Origin": ORIGIN})
    assert refused.status_code == 403
    run = secured.post(
        "/portal/pipelines/default/greeter/run", data={"csrf_token": token, "inputs": "{}"},
        headers={"Origin": ORIGIN},
    )  # fmt: skip
    assert run.status_code == 403
    assert automation_service.get_schedule(ctx.store, "default", "nightly").enabled
    secured.cookies.clear()
    log_in(secured, ADMIN)
    token = csrf_of(secured.get("/pipelines").text)
    no_csrf = secured.post(pause, data={}, headers={"Origin": ORIGIN})
    assert no_csrf.status_code == 403
    assert automation_service.get_schedule(ctx.store, "default", "nightly").enabled
    done = secured.post(pause, data={"csrf_token": token}, headers={"Origin": ORIGIN})
    assert done.status_code == 200  # followed the redirect back to the page
    assert automation_service.get_schedule(ctx.store, "default", "nightly").enabled is False
    assert "/schedules/nightly/resume" in done.text
    resume = "/portal/pipelines/default/schedules/nightly/resume"
    secured.post(resume, data={"csrf_token": token}, headers={"Origin": ORIGIN})
    assert automation_service.get_schedule(ctx.store, "default", "nightly").enabled
