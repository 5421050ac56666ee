"""The data, pipelines and settings pages over the real app and database: a table's page
with its schema, versions and profiles, the read-only SQL console, a pipeline's DAG and its
schedule's pause button, the run form, and API tokens, users and members."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from loopml import projects
from loopml.auth import service as auth
from loopml.auth import sessions
from loopml.core.contracts import Contract
from loopml.core.errors import LoopmlError
from loopml.data import lake, validation
from loopml.faces.context import AppContext
from loopml.pipelines import automation_service, service
from tests.waiting import eventually

from .conftest import ADMIN, ORIGIN, VIEWER, csrf_of, log_in


def ctx_of(http: TestClient) -> AppContext:
    ctx: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
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
    # A contract, and the report of a batch it rejected.
    ctx = ctx_of(anonymous)
    rule = Contract.model_validate({"columns": {"spend": {"min": 0}}})
    validation.set_contract(ctx.store, "default", "churn", rule, actor="t")
    bad = pa.table({"id": [250], "plan": ["pro"], "spend": [-1.0]})
    with pytest.raises(LoopmlError):
        lake.ingest_arrow(ctx.store, ctx.artifacts, "default", "churn", bad, actor="t")
    page = anonymous.get("/data/default/tables/churn")
    assert "&#34;min&#34;: 0" in page.text
    assert '<span class="status status-failed">failed</span>' in page.text
    assert "(1 rows)" in page.text
    assert "column rules" in anonymous.get("/data").text


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
    projects.create(ctx.store, "hidden", actor="t")
    assert secured.get("/pipelines?project=hidden").status_code == 404
    assert secured.get("/pipelines/hidden/greeter").status_code == 404
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


def test_with_authentication_off_settings_says_how_to_turn_it_on(anonymous: TestClient) -> None:
    page = anonymous.get("/settings")
    assert page.status_code == 200
    assert "LOOPML_AUTH_ENABLED=true" in page.text
    assert '<form method="post" action="/portal/settings' not in page.text
    token = sessions.csrf_token(anonymous.app.state.running.auth_key, "anonymous")  # type: ignore[attr-defined]
    answer = anonymous.post(
        "/portal/settings/tokens", data={"csrf_token": token, "name": "ci"},
        headers={"Origin": ORIGIN},
    )  # fmt: skip
    assert answer.status_code == 422
    assert "authentication is off" in answer.text


def _secret(page: str) -> str | None:
    found = re.search(r'id="token-secret" class="secret" value="(lm_[^"]+)"', page)
    return found.group(1) if found else None


def test_a_token_is_shown_once_and_can_be_revoked(secured: TestClient) -> None:
    log_in(secured, VIEWER)
    page = secured.get("/settings")
    assert page.status_code == 200
    token = csrf_of(page.text)
    form = {"csrf_token": token, "name": "ci", "expires_in_days": "7", "project": "default"}
    made = secured.post("/portal/settings/tokens", data=form, headers={"Origin": ORIGIN})
    assert made.status_code == 200, made.text
    secret = _secret(made.text)
    assert secret is not None
    assert made.headers["cache-control"] == "no-store"
    # The token works against the API, as a viewer of default.
    whoami = secured.get("/api/v1/auth/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert whoami.status_code == 200
    again = secured.get("/settings")
    assert secret not in again.text
    assert secret[:11] in again.text  # its prefix is listed
    tokens = ctx_of(secured)
    mine = [t for t in auth.list_tokens(tokens.store, VIEWER[0]) if t.name == "ci"]
    assert len(mine) == 1
    assert mine[0].project == "default"
    assert mine[0].role == "viewer"
    # Stronger than the viewer, or an expiry out of range: refused, nothing made.
    for bad, status in (({"role": "admin"}, 403), ({"expires_in_days": "0"}, 422)):
        refused = secured.post(
            "/portal/settings/tokens", data={**form, "name": "bad", **bad},
            headers={"Origin": ORIGIN},
        )  # fmt: skip
        assert refused.status_code == status, refused.text
        assert 'class="error"' in refused.text
    assert [t.name for t in auth.list_tokens(tokens.store, VIEWER[0])].count("bad") == 0
    missing = secured.post(
        f"/portal/settings/tokens/{mine[0].id}/revoke", data={}, headers={"Origin": ORIGIN}
    )
    assert missing.status_code == 403
    revoked = secured.post(
        f"/portal/settings/tokens/{mine[0].id}/revoke", data={"csrf_token": token},
        headers={"Origin": ORIGIN},
    )  # fmt: skip
    assert revoked.status_code == 200
    whoami = secured.get("/api/v1/auth/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert whoami.status_code == 401


def test_a_viewer_sees_no_admin_sections_and_cannot_post_to_them(secured: TestClient) -> None:
    ctx = ctx_of(secured)
    log_in(secured, VIEWER)
    page = secured.get("/settings")
    assert "Users" not in page.text
    assert "Find any token" not in page.text
    assert "Members of" not in page.text
    token = csrf_of(page.text)
    headers = {"Origin": ORIGIN}
    posts = [
        (
            "/portal/settings/users",
            {"name": "mallory", "password": "x" * 20, "platform_admin": "on"},
        ),
        ("/portal/settings/members/default", {"user": VIEWER[0], "role": "admin"}),
        ("/portal/settings/admin/tokens/lm_abcdefgh/revoke", {}),
        ("/portal/settings/users/root/disable", {}),
        (f"/portal/settings/members/default/{VIEWER[0]}/remove", {}),
    ]
    for url, data in posts:
        answer = secured.post(url, data={**data, "csrf_token": token}, headers=headers)
        assert answer.status_code == 403, (url, answer.text)
    assert "mallory" not in [u.name for u in auth.list_users(ctx.store)]
    assert not any(u.disabled for u in auth.list_users(ctx.store))
    members = {m.user: m.role for m in auth.list_members(ctx.store, "default")}
    assert members[VIEWER[0]] == "viewer"


def test_an_admin_makes_users_sets_roles_and_revokes_any_token(secured: TestClient) -> None:
    ctx = ctx_of(secured)
    log_in(secured, VIEWER)
    viewer_token = _secret(
        secured.post(
            "/portal/settings/tokens",
            data={"csrf_token": csrf_of(secured.get("/settings").text), "name": "leaky"},
            headers={"Origin": ORIGIN},
        ).text
    )
    assert viewer_token is not None
    secured.cookies.clear()
    log_in(secured, ADMIN)
    page = secured.get("/settings")
    assert "Find any token" in page.text
    assert "Members of default" in page.text
    token = csrf_of(page.text)
    headers = {"Origin": ORIGIN}
    weak = secured.post(
        "/portal/settings/users", data={"csrf_token": token, "name": "ed", "password": "short"},
        headers=headers,
    )  # fmt: skip
    assert weak.status_code == 422
    assert "12" in weak.text
    made = secured.post(
        "/portal/settings/users",
        data={"csrf_token": token, "name": "ed", "password": "Quartz-Violin-9-Harbor"},
        headers=headers,
    )
    assert made.status_code == 200
    assert "<td>ed</td>" in made.text
    role = secured.post(
        "/portal/settings/members/default",
        data={"csrf_token": token, "user": "ed", "role": "editor"}, headers=headers,
    )  # fmt: skip
    assert role.status_code == 200
    assert "<tr><td>ed</td><td>editor</td>" in role.text
    prefix = viewer_token[:11]
    found = secured.get("/settings", params={"prefix": prefix})
    assert f"Token of <strong>{VIEWER[0]}</strong>" in found.text
    secured.post(
        f"/portal/settings/admin/tokens/{prefix}/revoke", data={"csrf_token": token},
        headers=headers,
    )  # fmt: skip
    whoami = secured.get("/api/v1/auth/whoami", headers={"Authorization": f"Bearer {viewer_token}"})
    assert whoami.status_code == 401
    assert [u.name for u in auth.list_users(ctx.store)].count("ed") == 1


def test_a_running_runs_page_refreshes_itself_until_the_run_is_finished(
    anonymous: TestClient,
) -> None:
    ctx = greeter(anonymous)
    run = service.start_run(ctx.store, "default", "greeter", {"who": "ada"}, actor="t")
    live = f"/pipelines/default/runs/{run.id}/live"
    page = anonymous.get(f"/pipelines/default/runs/{run.id}")
    fragment = anonymous.get(live, params={"step": "greet"})
    assert fragment.status_code == 200, fragment.text
    assert '<div id="run-live"' in fragment.text
    assert "<html" not in fragment.text  # a fragment, not a page
    if not service.get_run(ctx.store, "default", run.id).status.finished:
        assert f'hx-get="{live}"' in page.text
        assert 'hx-trigger="every 2s"' in page.text
        assert "/static/vendor/htmx.min.js" in page.text
        assert f'hx-get="{live}?step=greet"' in fragment.text
    service.cancel_run(ctx.store, "default", run.id, actor="t")
    eventually(
        lambda: service.get_run(ctx.store, "default", run.id).status.finished,
        60,
        "the cancelled run to finish",
        interval_s=0.2,
    )
    done = anonymous.get(live)
    assert '<div id="run-live">' in done.text  # no more polling
    assert "hx-get" not in done.text
    final = anonymous.get(f"/pipelines/default/runs/{run.id}")
    assert "htmx.min.js" not in final.text
    assert anonymous.get("/pipelines/default/runs/" + "0" * 32 + "/live").status_code == 404


@pytest.mark.nats
def test_the_data_page_shows_a_streams_last_error_with_its_time_and_fix(
    anonymous: TestClient, nats_server: str
) -> None:
    """A subject no JetStream stream captures: the consumer cannot start, and the page says
    why (it used to show nothing of streams at all)."""
    import asyncio
    import html
    import uuid

    from loopml.core.errors import ConfigurationError
    from loopml.data.streams import service as streams
    from loopml.data.streams.consumer import StreamConsumer
    from loopml.settings import LakeSettings

    ctx = ctx_of(anonymous)
    subject = f"nowhere{uuid.uuid4().hex[:8]}.*"
    stream = streams.create(ctx.store, "default", "lost", source=nats_server, subject=subject,
                            table="lost", actor="t")  # fmt: skip
    with pytest.raises(ConfigurationError):
        asyncio.run(StreamConsumer(ctx.store, ctx.artifacts, LakeSettings(), stream).run())
    stats = streams.get(ctx.store, "default", "lost").stats
    at, beat = stats.last_error_at, stats.heartbeat_at
    assert at is not None
    assert beat is not None

    page = anonymous.get("/data")
    assert page.status_code == 200
    row = re.search(r'<tr id="stream-lost">(.*?)</tr>\s*<tr class="stream-error">(.*?)</tr>',
                    page.text, re.S)  # fmt: skip
    assert row, page.text
    cells = html.unescape(re.sub(r"<[^>]+>", " ", row.group(1))).split()
    assert cells == [
        "lost", nats_server, "subject", subject, "lost", "failing", "0", "—", "1",
        *f"{beat:%Y-%m-%d %H:%M:%S}".split(),
    ]  # fmt: skip
    told = " ".join(html.unescape(re.sub(r"<[^>]+>", "", row.group(2))).split())
    assert told == (
        f"Last error ({at:%Y-%m-%d %H:%M:%S}): starting: ConfigurationError: no JetStream "
        f"stream captures the subject {subject!r}: create one (nats stream add --subjects "
        f"'{subject}')"
    )


def test_the_empty_data_page_names_a_command_that_exists(anonymous: TestClient) -> None:
    from tests.unit.cli.test_hints import _problem

    projects.create(anonymous.app.state.running.context.store, "empty", actor="t")  # type: ignore[attr-defined]
    page = anonymous.get("/data?project=empty").text

    hint = re.search(r"No table yet\. Ingest one with <code>(.*?)</code>", page)
    assert hint is not None, page
    assert hint.group(1) == "loopml ingest FILE --table NAME -p empty"
    assert _problem(hint.group(1)) is None
