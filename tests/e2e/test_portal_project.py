"""The portal's current project in a real browser: the project chosen in any area page's
picker is the one Runs, Data, Pipelines and Models open on next (a cookie), until another
is chosen; Models' "every project" forgets it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .conftest import RunningServer

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
SHOTS = Path(os.environ.get("LOOPML_TEST_SHOTS", "/tmp/shots-d"))


def _seed(server: RunningServer) -> None:
    """Project ``churn`` with a run and a model; ``default`` with a model of its own."""
    from loopml.storage import LocalArtifactStore
    from loopml.store import MetadataStore
    from tests.tracking_rows import log_model, make_run

    made = server.cli("projects", "create", "churn")
    assert made.returncode == 0, made.stderr
    store = MetadataStore(f"sqlite:///{server.home / 'loopml.db'}")
    artifacts = LocalArtifactStore(server.home / "artifacts")
    try:
        runs = {project: make_run(store, project) for project in ("churn", "default")}
        for run in runs.values():
            log_model(store, artifacts, run)
    finally:
        store.dispose()
    for project, model in (("churn", "churner"), ("default", "plain")):
        done = server.cli("models", "register", model, "--run", runs[project].id,
                          "--project", project)  # fmt: skip
        assert done.returncode == 0, done.stderr


def _picked(page: Page) -> str:
    return page.locator("select[name=project]").first.input_value()


def test_every_area_page_opens_on_the_project_last_chosen(
    server: RunningServer, browser_context: BrowserContext
) -> None:
    _seed(server)
    page = browser_context.new_page()
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{server.url}/runs")
    assert page.locator("h1").inner_text() == "Runs in default"  # nothing chosen yet

    page.select_option("select[name=project]", "churn")
    page.locator("form:has(select[name=project]) button[type=submit]").first.click()
    page.wait_for_url("**/runs?**project=churn**")
    assert page.locator("h1").inner_text() == "Runs in churn"

    for area, heading in (("data", "Data in churn"), ("pipelines", "Pipelines in churn")):
        page.goto(f"{server.url}/{area}")
        assert page.locator("h1").inner_text() == heading, area
        assert _picked(page) == "churn", area
    page.goto(f"{server.url}/models")
    assert _picked(page) == "churn"
    listed = page.locator("main table tbody").inner_text()
    assert "churner" in listed
    assert "plain" not in listed
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "models-current-project.png"))
    page.goto(f"{server.url}/runs")
    assert page.locator("h1").inner_text() == "Runs in churn"

    # Another choice on another page moves every page; "every project" forgets it.
    page.goto(f"{server.url}/data?project=default")
    page.goto(f"{server.url}/pipelines")
    assert page.locator("h1").inner_text() == "Pipelines in default"
    page.goto(f"{server.url}/models?project=churn")
    page.goto(f"{server.url}/runs")
    assert page.locator("h1").inner_text() == "Runs in churn"
    page.goto(f"{server.url}/models?project=")
    listed = page.locator("main table tbody").inner_text()
    assert "churner" in listed
    assert "plain" in listed
    page.goto(f"{server.url}/data")
    assert page.locator("h1").inner_text() == "Data in default"
