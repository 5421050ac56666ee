"""The overview (``/``) over two projects: its tiles and tables sum what each project holds,
read in one query per kind, and a viewer sees only the projects it has a role in."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from loopml import projects
from loopml.core.alerts import AlertRuleSpec
from loopml.core.clock import utcnow
from loopml.core.deployments import DeploymentSpec
from loopml.faces.context import AppContext
from loopml.monitor import service as monitor
from loopml.monitor.windows import parse_size, window_start
from loopml.pipelines import service as pipelines
from loopml.portal.pages.overview import gather
from loopml.portal.viewer import Viewer
from loopml.store import alert_rules, deployments
from loopml.store import monitor as windows

from .conftest import ADMIN, VIEWER, log_in

SPEC = """\
name: hello
steps:
  - name: greet
    python: portal_no_such_module:greet
"""


def _deploy(ctx: AppContext, project: str, name: str) -> None:
    revision = deployments.NewRevision(
        number=1, model="churn", version=1, ref="churn/1", role="primary"
    )
    with ctx.store.session() as session:
        deployments.create(
            session,
            project,
            name,
            spec=DeploymentSpec(model="churn/1", min_replicas=0),
            revisions=[revision],
            roles=deployments.Roles(primary=1),
            traffic={1: 100},
            actor="t",
        )


def _window(
    ctx: AppContext, project: str, name: str, size: str, start: datetime, **usage: int
) -> None:
    summary: dict[str, object] = {"usage": usage}
    if size == "1h":
        replicas = [{"slot": 0}, {"slot": 1}]
        summary["resources"] = {"cpu_percent": 20.0, "rss_mb": 100.0, "replicas": replicas}
    window = {
        "end": start + timedelta(seconds=parse_size(size)),
        "rows": usage["requests"],
        "labels": 0,
        "state": {},
        "summary": summary,
    }
    with ctx.store.session() as session:
        windows.put_window(session, project, (name, "churn", 1, size, start), window)


def _fill(ctx: AppContext) -> dict[str, str]:
    """``default``: two deployments, one with windows; ``other``: one deployment with a
    window and a firing rule; a pipeline run in each. Returns each project's run id."""
    projects.create(ctx.store, "other", actor="t")
    for project, name in (("default", "d-a"), ("default", "d-b"), ("other", "o-a")):
        _deploy(ctx, project, name)
    now = utcnow()
    hour = datetime.fromtimestamp(now.timestamp() // 3600 * 3600, UTC)
    day = datetime.fromtimestamp(now.timestamp() // 86_400 * 86_400, UTC)
    minute = window_start(now, 60)
    _window(ctx, "default", "d-a", "1h", hour, requests=10, errors=1)
    _window(ctx, "default", "d-a", "1m", minute - timedelta(minutes=20), requests=10, errors=1)
    _window(ctx, "default", "d-a", "1h", hour - timedelta(hours=3), requests=1000, errors=9)
    _window(ctx, "default", "d-a", "1m", minute - timedelta(hours=3), requests=1000, errors=9)
    _window(ctx, "default", "d-a", "1h", hour - timedelta(days=2), requests=50, errors=5)
    _window(ctx, "default", "d-a", "1d", day, requests=100, errors=3)
    _window(ctx, "other", "o-a", "1h", hour, requests=5, errors=0)
    _window(ctx, "other", "o-a", "1m", minute - timedelta(minutes=1), requests=5, errors=0)
    spec = AlertRuleSpec(
        name="slow", deployment="o-a", metric="error_rate", comparator=">", threshold=0.5
    )
    monitor.create_rule(ctx.store, "other", spec, actor="t")
    with ctx.store.session() as session:
        alert_rules.set_state(session, "other", "slow", state="firing", since=now, value=0.9)
    runs = {}
    for project in ("default", "other"):
        pipelines.apply_spec(ctx.store, project, SPEC, actor="t")
        runs[project] = pipelines.start_run(ctx.store, project, "hello", {}, actor="t").id
    return runs


def _tile(page: str, title: str) -> tuple[str, str]:
    found = re.search(
        rf'<h2>{title}</h2><p class="big[^"]*">([^<]*)</p>\s*<p>(.*?)</p>', page, re.S
    )
    assert found, f"no {title} tile"
    return found.group(1), " ".join(found.group(2).split())


def test_the_overview_sums_every_project_the_viewer_sees(secured: TestClient) -> None:
    ctx: AppContext = secured.app.state.running.context  # type: ignore[attr-defined]
    runs = _fill(ctx)
    log_in(secured, ADMIN)
    page = secured.get("/").text
    assert _tile(page, "Deployments")[0] == "3"
    assert "pending</span> 3" in _tile(page, "Deployments")[1]
    # The minutes of both projects in the last 60; the minute three hours old is not in it.
    assert _tile(page, "Last hour") == ("15", "requests, 1 error")  # was "1 errors"
    # The hours of the last 24 (the three-hour-old one too), not the 1-day window since
    # midnight, nor the hour two days old.
    assert _tile(page, "Last day") == ("1,015", "requests, 10 errors")
    # The hour's windows hold two replicas each, but none runs now: the tile says so (it
    # once multiplied the windows' figures by their replicas: 80 % CPU, 400 MB of nothing).
    assert _tile(page, "Replicas") == ("0", "running now: 0.0 % CPU, 0 MB")
    assert _tile(page, "Firing alerts") == ("1", "slow")
    rows = re.findall(r'<a href="/projects/(\w+)/deployments/([\w-]+)">', page)
    assert rows == [("default", "d-a"), ("default", "d-b"), ("other", "o-a")]
    assert re.search(r"d-a</a></td>.*?<td>10</td>\s*<td>1</td>\s*<td>1,010</td>", page, re.S)
    for project, run in runs.items():
        assert f'href="/pipelines/{project}/runs/{run}"' in page
    assert "deployment.created <em>o-a</em> in other" in page
    assert "deployment.created <em>d-b</em> in default" in page


def test_a_viewer_sees_only_its_projects_on_the_overview(secured: TestClient) -> None:
    ctx: AppContext = secured.app.state.running.context  # type: ignore[attr-defined]
    runs = _fill(ctx)
    log_in(secured, VIEWER)
    page = secured.get("/").text
    assert _tile(page, "Deployments")[0] == "2"
    assert _tile(page, "Last hour") == ("10", "requests, 1 error")
    assert _tile(page, "Replicas") == ("0", "running now: 0.0 % CPU, 0 MB")
    assert _tile(page, "Firing alerts")[0] == "0"
    assert "o-a" not in page
    assert runs["other"] not in page
    assert f'href="/pipelines/default/runs/{runs["default"]}"' in page
    assert " in other" not in page


def test_the_activity_feed_folds_repeated_events_into_one_line(anonymous: TestClient) -> None:
    ctx: AppContext = anonymous.app.state.running.context  # type: ignore[attr-defined]
    from loopml.store import events

    with ctx.store.session() as session:
        events.append(
            session, type="model.registered", subject="churn/1", project="default", actor="ada"
        )
        for _ in range(120):
            events.append(
                session,
                type="table.appended",
                subject="prediction-log",
                project="default",
                actor="gateway",
            )
        events.append(
            session, type="alert.fired", subject="slow", project="default", actor="system"
        )

    page = anonymous.get("/").text
    feed = page[page.index('id="feed-h"') :]
    lines = re.findall(r"<li>(.*?)</li>", feed, re.S)
    text = [" ".join(re.sub(r"<[^>]+>", " ", line).split()) for line in lines]

    assert len(text) == 4, text  # and project.created, the oldest
    assert "alert.fired slow in default" in text[0]
    assert "table.appended prediction-log in default 120 times, " in text[1]
    assert re.search(r"120 times, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d to \d{4}-", text[1])
    assert "model.registered churn/1 in default" in text[2]
    assert "times" not in text[2]
    assert "project.created default" in text[3]


def test_the_feed_names_a_token_s_user_and_keeps_the_token_in_its_title(
    anonymous: TestClient,
) -> None:
    ctx: AppContext = anonymous.app.state.running.context  # type: ignore[attr-defined]
    from loopml.store import events

    actor = "user:walker/token:eb5156c0ffee4a5e9d1b"
    with ctx.store.session() as session:
        events.append(
            session, type="model.registered", subject="churn/2", project="default", actor=actor
        )

    page = anonymous.get("/").text
    feed = page[page.index('id="feed-h"') :]
    line = re.findall(r"<li>(.*?)</li>", feed, re.S)[0]
    assert f'<strong title="{actor}">walker</strong>' in line, line
    assert " ".join(re.sub(r"<[^>]+>", " ", line).split()).endswith(
        "walker model.registered churn/2 in default"
    )


def test_the_last_hour_is_the_trailing_60_minutes_not_the_clock_hour(
    anonymous: TestClient,
) -> None:
    """2,140 requests served 30 minutes before now, in the clock hour before now's: the
    tiles said 0 (they added the windows starting after now - 1 h: the hour under way)."""
    ctx: AppContext = anonymous.app.state.running.context  # type: ignore[attr-defined]
    control = anonymous.app.state.running.serving.control  # type: ignore[attr-defined]
    _deploy(ctx, "default", "d-a")
    now = window_start(utcnow(), 3600) + timedelta(minutes=20)
    burst = now - timedelta(minutes=30)
    _window(ctx, "default", "d-a", "1h", window_start(burst, 3600), requests=2440, errors=4)
    _window(ctx, "default", "d-a", "1m", window_start(burst, 60), requests=2140, errors=4)
    early = now - timedelta(minutes=75)  # in the same clock hour, outside the last 60 min
    _window(ctx, "default", "d-a", "1m", window_start(early, 60), requests=300, errors=0)
    _window(ctx, "default", "d-a", "1h", window_start(now, 3600), requests=0, errors=0)
    made = gather(ctx.store, control, ctx.settings, Viewer(None, "", False), now=now)
    assert made.hour == {"requests": 2140, "errors": 4}
    assert made.deployments[0]["hour"]["requests"] == 2140
    assert made.day == {"requests": 2440, "errors": 4}
