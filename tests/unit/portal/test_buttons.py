"""The buttons no other test presses, over the real app and its embedded worker: pausing and
resuming a trigger, cancelling a pipeline run, and a shadow deployment from the deploy
form (each as a browser posts it: the page's own form action and CSRF token)."""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.core.pipelines import PipelineRun, RunStatus
from loopml.deploy import DeploymentControl
from loopml.faces.context import AppContext
from loopml.pipelines import automation_service, service
from tests.unit.deploy.deploy_support import PackageFiles, package_files, register_files
from tests.waiting import eventually

from .conftest import ORIGIN, VIEWER, csrf_of, log_in

STEPS = """
import time
from loopml.pipelines import step

@step
def nap(ctx, seconds):
    time.sleep(seconds)
"""
SLEEPER = """\
name: sleeper
steps:
  - {name: nap, python: 'portal_steps:nap', with: {seconds: 60}}
"""
HEADERS = {"Origin": ORIGIN}


@pytest.fixture
def steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A step module the worker's steps import: ``portal_steps.nap``."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "portal_steps.py").write_text(textwrap.dedent(STEPS))
    monkeypatch.syspath_prepend(str(folder))
    yield
    sys.modules.pop("portal_steps", None)


def ctx_of(http: TestClient) -> AppContext:
    ctx: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
    return ctx


def sleeper(http: TestClient) -> AppContext:
    """The ``sleeper`` pipeline and a trigger on appended tables that runs it."""
    ctx = ctx_of(http)
    service.apply_spec(ctx.store, "default", SLEEPER, actor="t")
    automation_service.create_trigger(
        ctx.store, "default", name="on-append", pipeline="sleeper", on="table.appended", actor="t"
    )
    return ctx


def trigger_enabled(ctx: AppContext) -> bool:
    (trigger,) = automation_service.list_triggers(ctx.store, "default")
    return trigger.enabled


def finished(ctx: AppContext, run_id: str) -> PipelineRun:
    """The run once it has finished (60 s at most)."""

    def done() -> PipelineRun | None:
        run = service.get_run(ctx.store, "default", run_id)
        return run if run.status.finished else None

    return eventually(done, 60, f"run {run_id} to finish", interval_s=0.1)


def test_a_trigger_is_paused_and_resumed_from_the_pipelines_page(anonymous: TestClient) -> None:
    ctx = sleeper(anonymous)
    page = anonymous.get("/pipelines?project=default")
    assert page.status_code == 200, page.text
    pause = "/portal/pipelines/default/triggers/on-append/pause"
    assert f'action="{pause}"' in page.text
    assert 'aria-label="Pause on-append"' in page.text
    paused = anonymous.post(pause, data={"csrf_token": csrf_of(page.text)}, headers=HEADERS)
    assert paused.status_code == 200, paused.text  # the redirect back to the page, followed
    assert not trigger_enabled(ctx)
    resume = "/portal/pipelines/default/triggers/on-append/resume"
    assert f'action="{resume}"' in paused.text
    assert re.search(r"<td>on-append</td>.*?status-paused", paused.text, re.S)
    resumed = anonymous.post(resume, data={"csrf_token": csrf_of(paused.text)}, headers=HEADERS)
    assert resumed.status_code == 200, resumed.text
    assert trigger_enabled(ctx)
    assert f'action="{pause}"' in resumed.text
    wrong = anonymous.post(
        "/portal/pipelines/default/triggers/on-append/stop",
        data={"csrf_token": csrf_of(page.text)}, headers=HEADERS,
    )  # fmt: skip
    assert wrong.status_code == 404
    missing = anonymous.post(
        "/portal/pipelines/default/triggers/nope/pause",
        data={"csrf_token": csrf_of(page.text)}, headers=HEADERS,
    )  # fmt: skip
    assert missing.status_code == 404
    assert trigger_enabled(ctx)


def test_a_viewer_can_neither_pause_a_trigger_nor_cancel_a_run(
    steps: None, secured: TestClient
) -> None:
    ctx = sleeper(secured)
    run = service.start_run(ctx.store, "default", "sleeper", {}, actor="t")
    log_in(secured, VIEWER)
    page = secured.get("/pipelines?project=default")
    assert "/triggers/on-append/pause" not in page.text
    shown = secured.get(f"/pipelines/default/runs/{run.id}")
    assert shown.status_code == 200
    assert "Cancel this run" not in shown.text
    token = csrf_of(page.text)
    for path in (
        "/portal/pipelines/default/triggers/on-append/pause",
        f"/portal/pipelines/default/runs/{run.id}/cancel",
    ):
        refused = secured.post(path, data={"csrf_token": token}, headers=HEADERS)
        assert refused.status_code == 403, path
    assert trigger_enabled(ctx)
    assert not service.get_run(ctx.store, "default", run.id).status.finished
    service.cancel_run(ctx.store, "default", run.id, actor="t")
    assert finished(ctx, run.id).status == RunStatus.CANCELLED


def test_the_cancel_button_stops_a_running_run(steps: None, anonymous: TestClient) -> None:
    ctx = sleeper(anonymous)
    form = anonymous.get("/pipelines/default/sleeper")
    started = anonymous.post(
        "/portal/pipelines/default/sleeper/run",
        data={"csrf_token": csrf_of(form.text), "inputs": "{}"}, headers=HEADERS,
        follow_redirects=False,
    )  # fmt: skip
    assert started.status_code == 303, started.text
    run_page = started.headers["location"]
    run_id = run_page.rsplit("/", 1)[1]
    eventually(
        lambda: service.get_run(ctx.store, "default", run_id).status == RunStatus.RUNNING,
        60,
        "the worker to start the run",
        interval_s=0.1,
        describe=lambda: service.get_run(ctx.store, "default", run_id).status,
    )
    page = anonymous.get(run_page)
    cancel = f"/portal/pipelines/default/runs/{run_id}/cancel"
    assert f'action="{cancel}"' in page.text
    assert "Cancel this run" in page.text
    answer = anonymous.post(
        cancel, data={"csrf_token": csrf_of(page.text)}, headers=HEADERS, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == run_page
    assert finished(ctx, run_id).status == RunStatus.CANCELLED
    final = anonymous.get(run_page)
    assert "Cancel this run" not in final.text
    assert 'class="status status-cancelled"' in final.text


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> PackageFiles:
    return package_files(tmp_path_factory.mktemp("package") / "pkg")


def test_the_deploy_form_deploys_with_a_shadow_and_shows_it(
    anonymous: TestClient, package: PackageFiles
) -> None:
    ctx = ctx_of(anonymous)
    for _ in range(2):
        register_files(ctx.store, ctx.artifacts, package)
    page = anonymous.get("/deploy?choice=default/cancer")
    assert 'id="f-mode-shadow" name="mode" value="shadow"' in page.text
    fields = {
        "csrf_token": csrf_of(page.text), "project": "default", "model": "cancer",
        "update": "0", "name": "shady", "ref": "cancer/2", "target": "local",
        "min_replicas": "0", "max_replicas": "1", "cpu": "250m", "memory": "256Mi",
        "auth": "token", "mode": "shadow", "other": "cancer/1", "percent": "10",
    }  # fmt: skip
    answer = anonymous.post("/portal/deploy", data=fields, headers=HEADERS, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/projects/default/deployments/shady"
    control: DeploymentControl = anonymous.app.state.running.serving.control  # type: ignore[attr-defined]
    made = control.get("default", "shady")
    assert (made.spec.model, made.spec.shadow, made.spec.canary) == ("cancer/2", "cancer/1", None)
    assert list(made.traffic.values()) == [100]  # the shadow takes a copy, not a share
    detail = anonymous.get(answer.headers["location"])
    assert "Shadow <code>cancer/1</code> gets a copy of every request." in detail.text
    change = anonymous.get("/deploy?project=default&name=shady")
    assert 'id="f-mode-shadow" name="mode" value="shadow" checked' in change.text
    assert '<option value="cancer/1" selected>cancer/1</option>' in change.text
    # Saved again as "none", the shadow goes.
    again = {**fields, "csrf_token": csrf_of(change.text), "update": "1", "mode": "none"}
    done = anonymous.post("/portal/deploy", data=again, headers=HEADERS, follow_redirects=False)
    assert done.status_code == 303, done.text
    assert control.get("default", "shady").spec.shadow is None
