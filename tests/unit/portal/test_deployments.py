"""The deployment page and the deploy form over the real app: a registered model, deployments
made through the control plane or the form, roles, CSRF, and one real replica answering the
try-it form with authentication on."""

from __future__ import annotations

import html
import json
import re
import shlex
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loopml.auth import service
from loopml.core.alerts import AlertRuleSpec
from loopml.core.auth import Role
from loopml.core.errors import NotFoundError
from loopml.deploy import DeploymentControl
from loopml.monitor import service as monitor_service
from loopml.monitor.engine import Monitor
from loopml.platform import create_app
from loopml.platform.monitoring import gateway_errors
from loopml.serve.gateway.metrics import GatewayMetrics
from tests.conftest import free_port
from tests.unit.deploy.deploy_support import (
    PackageFiles,
    package_files,
    register_files,
    replica_processes,
)

from .conftest import ADMIN, ORIGIN, VIEWER, csrf_of, log_in, portal_settings

COLUMNS = [f"f{i}" for i in range(8)]


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> PackageFiles:
    return package_files(tmp_path_factory.mktemp("package") / "pkg")


def _register(http: TestClient, package: PackageFiles, versions: int = 2) -> None:
    ctx = http.app.state.running.context  # type: ignore[attr-defined]
    for _ in range(versions):
        register_files(ctx.store, ctx.artifacts, package)


def _control(http: TestClient) -> DeploymentControl:
    control: DeploymentControl = http.app.state.running.serving.control  # type: ignore[attr-defined]
    return control


def _idle(http: TestClient, name: str = "churn", **spec: Any) -> None:
    """A deployment that runs no replica (min_replicas 0), with a canary."""
    fields = {
        "model": "cancer/1",
        "min_replicas": 0,
        "canary": {"model": "cancer/2", "percent": 20},
    }
    _control(http).create("default", name, fields | spec, actor="t")


def _pre(page: str, element: str) -> str:
    found = re.search(rf'<pre id="{element}"[^>]*>(.*?)</pre>', page, re.S)
    assert found, f"no {element} on the page"
    return html.unescape(found.group(1))


def _form(page: str, **fields: str) -> dict[str, str]:
    return {"csrf_token": csrf_of(page), **fields}


DEPLOY = {
    "project": "default",
    "model": "cancer",
    "update": "0",
    "name": "fresh",
    "ref": "cancer/2",
    "target": "local",
    "min_replicas": "0",
    "max_replicas": "2",
    "cpu": "250m",
    "memory": "256Mi",
    "auth": "token",
    "mode": "none",
    "percent": "10",
}


def test_the_page_shows_status_revisions_traffic_urls_and_a_snippet_that_matches_the_signature(
    anonymous: TestClient, package: PackageFiles
) -> None:
    _register(anonymous, package)
    _idle(anonymous)
    page = anonymous.get("/projects/default/deployments/churn")
    assert page.status_code == 200, page.text
    text = page.text
    assert "Deployment churn" in text
    assert re.search(r'class="status status-(pending|scaled_to_zero)"', text)
    assert "http://127.0.0.1/projects/default/deployments/churn/predict" in text
    assert "/projects/default/deployments/churn/v2/models/churn/infer" in text
    assert "<strong>80 %</strong>" in text
    assert "<strong>20 %</strong>" in text
    # The replicas tile counts both revisions' replicas: its bounds are each revision's.
    assert "ready across 2 revisions, 0 to 1 each" in text
    # Both revisions take traffic: the live canary is promoted or dropped, not "rolled back
    # to" (this test asserted both rollback buttons before; one was the live primary's).
    assert "Roll back to" not in text
    assert "Promote the canary" in text
    assert "Drop the canary" in text
    # Every section is one click from the top; the snippets are tabs, the first one chosen.
    toc = re.search(r'<nav class="toc" aria-label="On this page">(.*?)</nav>', text, re.S)
    assert toc
    targets = re.findall(r'href="#([a-z-]+)">([^<]+)</a>', toc.group(1))
    assert [label for _, label in targets] == [
        "Revisions", "Endpoints", "Try it", "Usage", "Replicas", "Live quality", "Drift",
        "Alerts", "Logs",
    ]  # fmt: skip
    for anchor, _ in targets:
        assert f'id="{anchor}"' in text, anchor
    tabs = re.findall(r'role="tab" id="tab-([a-z0-9-]+)"[^>]*>([^<]+)</button>', text)
    assert tabs == [
        ("curl", "curl"), ("python", "Python"), ("v2-curl", "V2 curl"), ("v2-python", "V2 Python")
    ]  # fmt: skip
    curl = shlex.split(_pre(text, "snippet-curl"))
    assert curl[:3] == ["curl", "-s", "http://127.0.0.1/projects/default/deployments/churn/predict"]
    assert "Authorization: Bearer $LOOPML_TOKEN" not in curl  # authentication is off
    body = json.loads(curl[curl.index("-d") + 1])
    (row,) = body["instances"]
    assert list(row) == COLUMNS
    assert all(isinstance(v, float) for v in row.values())
    python = _pre(text, "snippet-python")
    compile(python, "snippet", "exec")
    assert "'instances'" in python
    assert "f7" in python
    for column in COLUMNS:  # the try-it form: one typed input per column
        assert f'name="col:{column}" type="number" step="any"' in text
    assert 'hx-trigger="every 1s"' in text
    assert '<script type="application/json" id="usage-data">' not in text  # no window yet


def _roles(page: str) -> dict[str, str]:
    """The revisions table's Role column as a person reads it, by revision number."""
    found = re.findall(
        r"<tr>\s*<td>(\d+)</td>\s*<td>[^<]*</td>\s*<td><code>[^<]*</code></td>\s*<td>(.*?)</td>",
        page,
        re.S,
    )
    return {number: " ".join(re.sub(r"<[^>]+>", "", cell).split()) for number, cell in found}


def test_promote_and_rollback_change_the_traffic(
    anonymous: TestClient, package: PackageFiles
) -> None:
    _register(anonymous, package)
    _idle(anonymous)
    page = anonymous.get("/projects/default/deployments/churn").text
    assert _roles(page) == {"2": "canary", "1": "primary"}
    token = csrf_of(page)
    answer = anonymous.post(
        "/portal/deployments/default/churn/promote",
        data={"csrf_token": token, "action": "promote"},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/projects/default/deployments/churn"
    promoted = _control(anonymous).get("default", "churn")
    assert (promoted.spec.model, promoted.spec.canary) == ("cancer/2", None)
    assert set(promoted.traffic.values()) == {100}
    # The promoted canary takes every request: the page says what it is now.
    page = anonymous.get("/projects/default/deployments/churn").text
    assert _roles(page) == {"2": "primary (was canary)", "1": "retired"}
    assert "ready, of 0 to 1" in page  # one revision serves
    back = anonymous.post(
        "/portal/deployments/default/churn/rollback",
        data={"csrf_token": token, "revision": "1"},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert back.status_code == 303
    assert _control(anonymous).get("default", "churn").traffic == {1: 100}
    page = anonymous.get("/projects/default/deployments/churn").text
    assert "Roll back to 1" not in page
    assert "Roll back to 2" in page  # no traffic now: it can be rolled back to
    assert _roles(page) == {"2": "retired", "1": "primary"}


def test_a_long_history_lists_the_live_and_newest_revisions_and_links_to_all(
    anonymous: TestClient, package: PackageFiles
) -> None:
    _register(anonymous, package)
    control = _control(anonymous)
    control.create("default", "long", {"model": "cancer/1", "min_replicas": 0}, actor="t")
    for n in range(2, 10):  # revisions 2 to 9, the version changing each time
        control.update("default", "long", {"model": f"cancer/{2 - n % 2}"}, actor="t")
    control.rollback("default", "long", 3, actor="t")  # an old one takes the traffic again
    page = anonymous.get("/projects/default/deployments/long").text
    # The one serving, then the five newest others, newest first: the page stays a page.
    assert list(_roles(page)) == ["9", "8", "7", "6", "5", "3"]
    assert _roles(page)["3"].startswith("primary")
    assert "The live and newest 6 of 9 revisions" in page
    assert 'href="?revisions=all#rev-h">list all 9</a>' in page
    every = anonymous.get("/projects/default/deployments/long?revisions=all").text
    assert list(_roles(every)) == [str(n) for n in range(9, 0, -1)]
    assert "list all" not in every
    # The link keeps what else the page was asked for (the logs' filter, the period).
    filtered = anonymous.get("/projects/default/deployments/long?grep=boot&period=1h").text
    assert 'href="?grep=boot&amp;period=1h&amp;revisions=all#rev-h">list all 9</a>' in filtered


def test_the_deploy_form_lists_versions_and_creates_a_deployment(
    anonymous: TestClient, package: PackageFiles
) -> None:
    _register(anonymous, package)
    empty = anonymous.get("/deploy")
    assert empty.status_code == 200
    assert 'value="default/cancer"' in empty.text
    page = anonymous.get("/deploy?choice=default/cancer")
    assert page.status_code == 200, page.text
    assert '<option value="cancer/2"' in page.text
    assert "not judged" in page.text
    # Authentication is off here: the form says the paths are open whatever is chosen (it
    # offered "need a token (with authentication on)", clipped in its narrow column).
    assert ">ask for a token</option>" in page.text
    assert "authentication is off: every path is open until it is turned on" in page.text
    answer = anonymous.post(
        "/portal/deploy",
        data=_form(page.text, **{**DEPLOY, "mode": "canary", "other": "cancer/1", "percent": "25"}),
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/projects/default/deployments/fresh"
    made = _control(anonymous).get("default", "fresh")
    assert made.spec.max_replicas == 2
    assert made.spec.resources.cpu == "250m"
    assert made.spec.canary is not None
    assert made.spec.canary.percent == 25
    assert sorted(made.traffic.values()) == [25, 75]
    # The same form changes it.
    change = anonymous.get("/deploy?project=default&name=fresh")
    assert change.status_code == 200
    assert "Change deployment fresh" in change.text
    assert 'value="25"' in change.text
    update = {**DEPLOY, "update": "1", "max_replicas": "3"}
    answer = anonymous.post(
        "/portal/deploy",
        data=_form(change.text, **update),
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    changed = _control(anonymous).get("default", "fresh")
    assert (changed.spec.max_replicas, changed.spec.canary) == (3, None)


def test_the_preview_shows_the_plan_and_writes_nothing(
    anonymous: TestClient, package: PackageFiles
) -> None:
    _register(anonymous, package)
    page = anonymous.get("/deploy?choice=default/cancer")
    answer = anonymous.post(
        "/portal/deploy/preview",
        data=_form(page.text, **{**DEPLOY, "mode": "canary", "other": "cancer/1", "percent": "30"}),
        headers={"Origin": ORIGIN},
    )
    assert answer.status_code == 200, answer.text
    assert "What will change" in answer.text
    assert "revision 1 traffic" in answer.text
    assert "70 %" in answer.text
    assert "cancer/1 at 30 %" in answer.text
    with pytest.raises(NotFoundError):
        _control(anonymous).get("default", "fresh")
    _idle(anonymous, "old")
    change = anonymous.get("/deploy?project=default&name=old")
    answer = anonymous.post(
        "/portal/deploy/preview",
        data=_form(change.text, **{**DEPLOY, "name": "old", "update": "1", "max_replicas": "4"}),
        headers={"Origin": ORIGIN},
    )
    assert answer.status_code == 200, answer.text
    assert re.search(r'max_replicas</td>\s*<td><span class="diff-old">1</span>', answer.text)
    assert _control(anonymous).get("default", "old").spec.max_replicas == 1


def test_the_form_refuses_a_canary_that_cannot_take_the_primarys_requests_and_says_why(
    anonymous: TestClient, package: PackageFiles
) -> None:
    from loopml.registry import register_version
    from tests.tracking_rows import log_model, make_run

    ctx = anonymous.app.state.running.context  # type: ignore[attr-defined]
    for columns in (COLUMNS, COLUMNS[:3]):
        run = make_run(ctx.store)
        signature = {"inputs": [{"name": c, "type": "float"} for c in columns]}
        log_model(ctx.store, ctx.artifacts, run, signature=signature)
        register_version(ctx.store, ctx.artifacts, project="default", model_name="cancer",
                         run_id=run.id, actor="t")  # fmt: skip
    wrong = {**DEPLOY, "ref": "cancer/1", "mode": "canary", "other": "cancer/2", "percent": "20"}
    reason = (
        "the canary cancer/2 cannot take the requests of the primary cancer/1: it refuses "
        "&#39;f3&#39;, &#39;f4&#39;, &#39;f5&#39;, &#39;f6&#39;, &#39;f7&#39;, which the "
        "primary&#39;s requests carry. Its share of the requests would fail with 422"
    )
    page = anonymous.get("/deploy?choice=default/cancer")
    for target in ("/portal/deploy/preview", "/portal/deploy"):
        answer = anonymous.post(target, data=_form(page.text, **wrong), headers={"Origin": ORIGIN})
        assert answer.status_code == 409, answer.text
        assert reason in answer.text
        assert "What will change" not in answer.text
    with pytest.raises(NotFoundError):
        _control(anonymous).get("default", "fresh")
    _control(anonymous).create("default", "old", {"model": "cancer/1"}, actor="t")
    change = anonymous.get("/deploy?project=default&name=old")
    update = {**wrong, "name": "old", "update": "1"}
    answer = anonymous.post(
        "/portal/deploy/preview", data=_form(change.text, **update), headers={"Origin": ORIGIN}
    )
    assert answer.status_code == 409, answer.text
    assert reason in answer.text


def test_bad_replicas_show_the_form_again_with_the_reason_and_create_nothing(
    anonymous: TestClient, package: PackageFiles
) -> None:
    _register(anonymous, package)
    page = anonymous.get("/deploy?choice=default/cancer")
    for target in ("/portal/deploy", "/portal/deploy/preview"):
        answer = anonymous.post(
            target,
            data=_form(page.text, **{**DEPLOY, "min_replicas": "3", "max_replicas": "2"}),
            headers={"Origin": ORIGIN},
        )
        assert answer.status_code == 422, answer.text
        assert "min_replicas (3) is more than max_replicas (2)" in answer.text
        assert 'value="fresh"' in answer.text  # what was typed is kept
    taken = anonymous.post(
        "/portal/deploy",
        data=_form(page.text, **{**DEPLOY, "name": "Not A Name"}),
        headers={"Origin": ORIGIN},
    )
    assert taken.status_code == 422
    assert "invalid deployment name" in taken.text
    assert _control(anonymous).list_("default").items == []


def test_a_form_without_its_csrf_token_is_refused(
    anonymous: TestClient, package: PackageFiles
) -> None:
    _register(anonymous, package)
    _idle(anonymous)
    for path, data in (
        ("/portal/deploy", DEPLOY),
        ("/portal/deployments/default/churn/rollback", {"revision": "1"}),
        ("/portal/deployments/default/churn/promote", {}),
        ("/portal/deployments/default/churn/try", {}),
    ):
        answer = anonymous.post(path, data=data, headers={"Origin": ORIGIN})
        assert answer.status_code == 403, path
        assert "CSRF" in answer.text
    assert [d.name for d in _control(anonymous).list_("default").items] == ["churn"]
    assert _control(anonymous).get("default", "churn").spec.canary is not None


def test_a_viewer_sees_the_page_but_no_button_and_cannot_change_anything(
    secured: TestClient, package: PackageFiles
) -> None:
    _register(secured, package)
    _idle(secured)
    service.create_user(
        secured.app.state.running.context.store,  # type: ignore[attr-defined]
        "olga",
        "a long outsider passphrase",
        platform_admin=False,
        actor="t",
    )
    log_in(secured, VIEWER)
    page = secured.get("/projects/default/deployments/churn")
    assert page.status_code == 200, page.text
    for button in ("Roll back", "Promote the canary", "Change this deployment", "Deploy</button>"):
        assert button not in page.text
    assert '-H "Authorization: Bearer $LOOPML_TOKEN"' in _pre(page.text, "snippet-curl")
    form = secured.get("/deploy")
    assert "No registered model in a project where you hold the editor role" in form.text
    assert "Deploy</button>" not in form.text
    assert secured.get("/deploy?choice=default/cancer").status_code == 403
    token = csrf_of(page.text)
    for path, data in (
        ("/portal/deploy", DEPLOY),
        ("/portal/deploy/preview", DEPLOY),
        ("/portal/deployments/default/churn/rollback", {"revision": "1"}),
        ("/portal/deployments/default/churn/promote", {}),
    ):
        answer = secured.post(path, data={**data, "csrf_token": token}, headers={"Origin": ORIGIN})
        assert answer.status_code == 403, path
    assert [d.name for d in _control(secured).list_("default").items] == ["churn"]
    secured.cookies.clear()
    log_in(secured, ("olga", "a long outsider passphrase"))
    assert secured.get("/projects/default/deployments/churn").status_code == 404
    assert secured.get("/projects/default/deployments/churn/logs").status_code == 404


def test_the_logs_fragment_returns_the_lines_filtered(
    anonymous: TestClient, package: PackageFiles, tmp_path: Path
) -> None:
    _register(anonymous, package, versions=1)
    _control(anonymous).create(
        "default", "churn", {"model": "cancer/1", "min_replicas": 0}, actor="t"
    )
    log = tmp_path / "home" / "deployments" / "default" / "churn" / "replicas.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(
        "INFO:     Started server process [4242]\n"
        'INFO:     127.0.0.1:5000 - "POST /predict HTTP/1.1" 200 OK\n'
        "ERROR:    column 'age' is <missing>\n",
        encoding="utf-8",
    )
    whole = anonymous.get("/projects/default/deployments/churn/logs")
    assert whole.status_code == 200
    assert "Started server process" in whole.text
    assert "&lt;missing&gt;" in whole.text  # escaped
    assert "<html" not in whole.text  # a fragment
    errors = anonymous.get("/projects/default/deployments/churn/logs?level=error")
    assert "column &#39;age&#39;" in errors.text
    assert "Started server" not in errors.text
    grep = anonymous.get("/projects/default/deployments/churn/logs?grep=POST+/predict")
    assert "200 OK" in grep.text
    assert "ERROR" not in grep.text
    bad = anonymous.get("/projects/default/deployments/churn/logs?level=loud")
    assert bad.status_code == 422
    assert "is not one of" in bad.text
    page = anonymous.get("/projects/default/deployments/churn?level=error")  # without JavaScript
    assert "column &#39;age&#39;" in page.text
    assert "Started server" not in page.text


@pytest.fixture
def served(tmp_path: Path, migrated_database_url: str) -> Iterator[TestClient]:
    """Authentication on, on a port of its own (replicas log their predictions there)."""
    settings = portal_settings(tmp_path, migrated_database_url, auth=True)
    settings = settings.model_copy(
        update={"server": settings.server.model_copy(update={"port": free_port()})}
    )
    app = create_app(settings)
    with TestClient(app, base_url=ORIGIN) as client:
        store = app.state.running.context.store
        service.create_user(store, ADMIN[0], ADMIN[1], platform_admin=True, actor="test")
        service.create_user(store, VIEWER[0], VIEWER[1], platform_admin=False, actor="test")
        service.set_role(store, "default", VIEWER[0], Role.VIEWER, actor="test")
        yield client


def test_the_try_it_form_predicts_through_the_gateway_with_authentication_on(
    served: TestClient, package: PackageFiles
) -> None:
    _register(served, package, versions=1)
    control = _control(served)
    control.create("default", "live", {"model": "cancer/1"}, actor="t")
    try:
        log_in(served, VIEWER)  # a viewer may predict, as with a token
        page = served.get("/projects/default/deployments/live")
        assert page.status_code == 200
        row = json.loads(shlex.split(_pre(page.text, "snippet-curl"))[-1])["instances"][0]
        fields = {f"col:{k}": str(v) for k, v in row.items()}
        answer = served.post(
            "/portal/deployments/default/live/try",
            data={**fields, "csrf_token": csrf_of(page.text)},
            headers={"Origin": ORIGIN},
        )
        assert answer.status_code == 200, answer.text
        # The answer's page opens at the form and its answer, not at the top.
        assert 'action="/portal/deployments/default/live/try#try-h"' in answer.text
        result = json.loads(_pre(answer.text, "try-answer"))
        assert "Answer (HTTP 200)" in answer.text, result
        assert len(result["predictions"]) == 1
        bad = served.post(
            "/portal/deployments/default/live/try",
            data={**fields, "col:f0": "twelve", "csrf_token": csrf_of(page.text)},
            headers={"Origin": ORIGIN},
        )
        assert bad.status_code == 422
        assert "column &#39;f0&#39; takes a float value" in bad.text
        # Reloading the answer's address (a GET) is the deployment page, not a raw 405.
        again = served.get("/portal/deployments/default/live/try", follow_redirects=False)
        assert again.status_code == 303
        assert again.headers["location"] == "/projects/default/deployments/live#try-h"
    finally:
        control.delete("default", "live", actor="t")
    assert replica_processes("live") == []


def _three_columns(dest: Path) -> PackageFiles:
    """A model of the first three columns only: it refuses the other five (422)."""
    from sklearn.linear_model import LogisticRegression

    from loopml.packaging import package_model
    from tests.unit.deploy.deploy_support import cancer_frame

    frame, target = cancer_frame()
    model = LogisticRegression(max_iter=200).fit(frame.iloc[:, :3], target)
    package = package_model(model, dest, sample=frame.iloc[:20, :3])
    files = {p.name: p.read_bytes() for p in package.path.iterdir() if p.is_file()}
    return PackageFiles(files, files.pop("loopml-model.json"))


def test_a_request_a_replica_refuses_stays_a_4xx_with_its_message_on_the_try_it_form(
    served: TestClient, package: PackageFiles, tmp_path: Path
) -> None:
    """Both versions here were recorded without a signature, so the control plane cannot
    tell that the canary takes other inputs: its replica's 422 is the caller's error, not
    a bad gateway (502)."""
    _register(served, package, versions=1)
    ctx = served.app.state.running.context  # type: ignore[attr-defined]
    register_files(ctx.store, ctx.artifacts, _three_columns(tmp_path / "three"))
    control = _control(served)
    # Half and half: the page builds its form from the canary (the tie goes to the newer
    # revision), which the primary's replica refuses.
    spec = {"model": "cancer/1", "canary": {"model": "cancer/2", "percent": 50}}
    control.create("default", "live", spec, actor="t")
    try:
        log_in(served, VIEWER)
        page = served.get("/projects/default/deployments/live")
        row = json.loads(shlex.split(_pre(page.text, "snippet-curl"))[-1])["instances"][0]
        fields = {f"col:{k}": str(v) for k, v in row.items()}
        for _ in range(40):
            answer = served.post(
                "/portal/deployments/default/live/try",
                data={**fields, "csrf_token": csrf_of(page.text)},
                headers={"Origin": ORIGIN},
            )
            if answer.status_code != 200:
                break
        assert answer.status_code == 422, answer.text
        assert "Answer (HTTP 422)" in answer.text
        shown = json.loads(_pre(answer.text, "try-answer"))
        assert shown["error"]["code"] == "validation_error"
        assert shown["error"]["message"].startswith(
            "missing column(s) ['f3', 'f4', 'f5', 'f6', 'f7']"
        )
    finally:
        control.delete("default", "live", actor="t")
    assert replica_processes("live") == []


def test_usage_charts_and_their_table_come_from_the_monitors_windows_with_the_alert_rules(
    anonymous: TestClient, package: PackageFiles
) -> None:
    _register(anonymous, package, versions=1)
    _control(anonymous).create(
        "default", "churn", {"model": "cancer/1", "min_replicas": 0}, actor="t"
    )
    ctx = anonymous.app.state.running.context  # type: ignore[attr-defined]
    metrics = GatewayMetrics(list)
    now = datetime.now(UTC)
    engine = Monitor(
        ctx.store,
        ctx.artifacts,
        ctx.settings.monitor,
        clock=lambda: now,
        errors=lambda: gateway_errors(metrics),
    )
    engine.tick()  # a first round, before anything is counted
    for _ in range(3):
        metrics.observe(("default", "churn"), "cancer", "1", "1", 503, 0.01, "unavailable")
    engine.tick()
    spec = AlertRuleSpec(
        name="errors", deployment="churn", metric="error_rate", comparator=">", threshold=0.5
    )
    monitor_service.create_rule(ctx.store, "default", spec, actor="t")
    page = anonymous.get("/projects/default/deployments/churn")
    assert page.status_code == 200
    found = re.search(
        r'<script type="application/json" id="usage-data">(.*?)</script>', page.text, re.S
    )
    assert found
    series = json.loads(found.group(1))
    # The usage-only 1m windows: a point a minute, the 3 failures in the minute they came.
    assert [e for e in series["errors"] if e] == [3.0]
    assert len(series["t"]) == len(series["p95"]) == 60
    assert series["max"] - series["min"] == pytest.approx(3600)  # the axis: the last hour
    assert series["min"] <= series["t"][0] <= series["max"]
    assert re.search(r"<td>cancer/1</td><td>3</td><td>[0-9.]+</td><td>3</td>", page.text)
    assert "<code>error_rate &gt; 0.5</code>" in page.text


def _judging(page: str) -> dict[str, str]:
    """The canary judging fields as the page fills them (what a browser posts back)."""
    found = dict(re.findall(r'name="(canary_[a-z_]+)" type="number"[^>]*value="([^"]*)"', page))
    auto = re.search(r'name="canary_auto">.*?<option value="([a-z]*)" selected>', page, re.S)
    found["canary_auto"] = auto.group(1) if auto else ""
    return found


def test_the_deploy_form_keeps_a_canarys_judging_settings_when_saved(
    anonymous: TestClient, package: PackageFiles
) -> None:
    _register(anonymous, package)
    page = anonymous.get("/deploy?choice=default/cancer")
    judging = {"canary_auto": "true", "canary_max_latency_ratio": "2", "canary_min_requests": "50"}
    canary = {**DEPLOY, "mode": "canary", "other": "cancer/1", "percent": "25", **judging}
    answer = anonymous.post(
        "/portal/deploy", data=_form(page.text, **canary), headers={"Origin": ORIGIN},
        follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    made = _control(anonymous).get("default", "fresh").spec.canary
    assert made is not None
    assert (made.auto, made.max_latency_ratio, made.min_requests) == (True, 2.0, 50)
    assert made.max_quality_drop is None  # left empty: the server's setting

    change = anonymous.get("/deploy?project=default&name=fresh")
    shown = _judging(change.text)
    assert shown["canary_auto"] == "true"
    assert shown["canary_max_latency_ratio"] == "2.0"
    assert shown["canary_min_requests"] == "50"
    assert shown["canary_max_quality_drop"] == ""
    update = {**DEPLOY, "update": "1", "mode": "canary", "other": "cancer/1", "percent": "25"}
    preview = anonymous.post(
        "/portal/deploy/preview", data=_form(change.text, **update, **shown),
        headers={"Origin": ORIGIN},
    )  # fmt: skip
    assert "min_requests 50" in preview.text
    answer = anonymous.post(
        "/portal/deploy", data=_form(change.text, **{**update, "max_replicas": "3"}, **shown),
        headers={"Origin": ORIGIN}, follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    kept = _control(anonymous).get("default", "fresh").spec
    assert kept.max_replicas == 3
    assert kept.canary is not None
    assert (kept.canary.auto, kept.canary.max_latency_ratio, kept.canary.min_requests) == (
        True,
        2.0,
        50,
    )


def test_a_page_read_that_must_write_runs_again_with_the_write_lock(
    anonymous: TestClient,
) -> None:
    """Pages read in read-only transactions (deferred on SQLite, READ ONLY on PostgreSQL;
    a write in one is refused on both); a read that writes on first use (a profile built on
    first view) is run again with the write lock instead of answering 500."""
    import anyio
    from starlette.requests import Request

    from loopml.portal.viewer import read_only
    from loopml.store import projects

    ctx = anonymous.app.state.running.context  # type: ignore[attr-defined]
    request = Request({"type": "http", "app": anonymous.app})
    tries: list[int] = []

    def gather() -> str:
        tries.append(1)
        with ctx.store.session() as session:
            return projects.create(session, f"made-{len(tries)}", actor="t").name

    made = anyio.run(read_only, request, gather)
    assert made == "made-2"
    assert len(tries) == 2
    with ctx.store.session() as session:
        assert projects.get(session, made).name == made
        assert "made-1" not in [p.name for p in projects.list_(session).items]


def test_the_deploy_form_sets_when_a_canary_is_promoted_and_its_quality_margin(
    anonymous: TestClient, package: PackageFiles
) -> None:
    _register(anonymous, package)
    page = anonymous.get("/deploy?choice=default/cancer")
    assert 'name="canary_promote_after_s"' in page.text
    assert "Promoted when no worse after (s)" in page.text
    judging = {
        "canary_auto": "true",
        "canary_promote_after_s": "900",
        "canary_min_labels": "300",
        "canary_max_quality_drop": "0.01",
    }
    canary = {**DEPLOY, "mode": "canary", "other": "cancer/1", "percent": "25", **judging}
    answer = anonymous.post(
        "/portal/deploy", data=_form(page.text, **canary), headers={"Origin": ORIGIN},
        follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    made = _control(anonymous).get("default", "fresh").spec.canary
    assert made is not None
    assert (made.auto, made.promote_after_s, made.min_labels, made.max_quality_drop) == (
        True,
        900.0,
        300,
        0.01,
    )
