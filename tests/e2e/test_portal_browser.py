"""The portal in a real browser (Debian's Chromium through Playwright) against a real
``loopml up`` with authentication on and the demo's data: a user logs in and walks every
page; no page logs a console error or a failed request, and axe-core finds no serious or
critical accessibility violation."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from loopml.client import Client

from .conftest import LOOPML, RunningServer, base_env, running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(900)]

ADMIN = ("root", "a long admin passphrase 1")
VIEWER = ("vera", "a long viewer passphrase 1")
SERIOUS = frozenset({"serious", "critical"})


@dataclass
class Portal:
    """The running server, the admin's API token, and the demo's names."""

    server: RunningServer
    token: str

    @property
    def url(self) -> str:
        return self.server.url

    def client(self) -> Client:
        return Client(self.url, token=self.token)


def _cli(env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 120) -> str:
    done = subprocess.run(
        [*LOOPML, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"loopml {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """``loopml up`` with authentication on, after the demo ran through it as the admin; a
    viewer of the demo project exists too."""
    home = tmp_path_factory.mktemp("portal-home")
    # SQLite has one writer: on a loaded 2-core CI machine the retrain's writers can hold it
    # past the default 5 s while the demo's traffic and feedback also write; a step's lease
    # then outlasts such a wait (the defaults favour a quick takeover instead).
    secured = {
        "LOOPML_AUTH_ENABLED": "true",
        "LOOPML_DATABASE_BUSY_TIMEOUT_MS": "30000",
        "LOOPML_WORKER_LEASE_S": "90",
        "LOOPML_WORKER_HEARTBEAT_S": "5",
        "LOOPML_SERVER_LOG_FORMAT": "json",
    }
    _cli({**base_env(home), **secured}, "users", "create-admin", ADMIN[0], "--password-stdin",
         stdin=ADMIN[1] + "\n")  # fmt: skip
    with running_server(home, secured) as server:
        with Client(server.url) as anonymous:
            token = str(anonymous.login(ADMIN[0], ADMIN[1], expires_in_days=1)["token"])
        env = {**server.env, "LOOPML_TOKEN": token}
        _cli(env, "demo", "--budget-s", "20", "--canary-s", "3", timeout=640)
        with Client(server.url, token=token) as admin:
            admin.users.create(VIEWER[0], VIEWER[1])
            admin.users.set_role("demo", VIEWER[0], "viewer")
        yield Portal(server, token)


@dataclass
class Watched:
    """A page with what went wrong on it: console errors and failed requests."""

    page: Page
    problems: list[str]


@pytest.fixture
def browser_context(chromium: Browser) -> Iterator[BrowserContext]:
    context = chromium.new_context()
    try:
        yield context
    finally:
        context.close()


def watched(context: BrowserContext) -> Watched:
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} on {r.url}") if r.status >= 400 else None,
    )
    return Watched(page, problems)


def log_in(watch: Watched, url: str, user: tuple[str, str]) -> None:
    page = watch.page
    page.goto(f"{url}/")
    assert "/login" in page.url  # a visitor is sent to the login form
    page.get_by_label("User name").fill(user[0])
    page.get_by_label("Password").fill(user[1])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/")
    # The overview's own requests (its favicon among them) finish before a test navigates
    # on; otherwise the browser aborts them and the watch reports a failed request.
    page.wait_for_load_state("networkidle")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page)
    return [v for v in found.response["violations"] if v.get("impact") in SERIOUS]


PAGES = [
    "/",
    "/projects/demo/deployments/cancer-api",
    "/deploy?project=demo&name=cancer-api",
    "/models",
    "/models/demo/cancer",
    "/models/demo/cancer/compare?a=1&b=2",
    "/runs?project=demo",
    "/data?project=demo",
    "/data/demo/tables/patients",
    "/pipelines?project=demo",
    "/settings",
    "/docs",
]
"""Every page walked by the accessibility and console checks (others join as they land)."""


def test_the_overview_shows_the_demo_deployment_after_login(
    portal: Portal, browser_context: BrowserContext
) -> None:
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    page = watch.page
    assert page.get_by_role("heading", name="Overview").is_visible()
    link = page.get_by_role("link", name="cancer-api")
    assert link.is_visible()
    assert watch.problems == []


@pytest.mark.parametrize("path", PAGES)
def test_no_page_has_a_console_error_a_failed_request_or_a_serious_axe_violation(
    portal: Portal, browser_context: BrowserContext, path: str
) -> None:
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    watch.page.goto(portal.url + path)
    watch.page.wait_for_load_state("networkidle")
    if path != "/docs":  # Swagger UI is a third party's page, checked for errors only
        assert axe_violations(watch.page) == []
    assert watch.problems == []


def test_dark_and_light_themes_both_pass_the_contrast_check(
    portal: Portal, browser_context: BrowserContext
) -> None:
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    page = watch.page
    for theme in ("light", "dark"):
        page.evaluate(f"document.documentElement.setAttribute('data-theme', '{theme}')")
        assert axe_violations(page) == [], theme


DEPLOYMENT = "/projects/demo/deployments/cancer-api"


def test_a_canary_deployed_from_the_form_shows_its_split_on_the_detail_page(
    portal: Portal, browser_context: BrowserContext
) -> None:
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    page = watch.page
    page.goto(f"{portal.url}/deploy?project=demo&name=cancer-api")
    page.get_by_label("canary: a share of the traffic").check()
    page.get_by_label("Canary or shadow version").select_option("cancer/1")
    page.get_by_label("Canary share (%)").fill("20")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(f"{portal.url}{DEPLOYMENT}")
    traffic = page.get_by_role("table").first.inner_text()
    assert "80 %" in traffic
    assert "20 %" in traffic
    assert "cancer/1" in traffic
    assert watch.problems == []


def test_the_curl_snippet_copied_from_the_page_predicts_in_a_shell(
    portal: Portal, browser_context: BrowserContext
) -> None:
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    watch.page.goto(portal.url + DEPLOYMENT)
    snippet = watch.page.locator("#snippet-curl").inner_text()
    assert snippet.startswith("curl")
    done = subprocess.run(
        ["bash", "-c", snippet],
        env={"PATH": "/usr/bin:/bin", "LOOPML_TOKEN": portal.token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["predictions"], answer


def test_the_try_it_form_predicts(portal: Portal, browser_context: BrowserContext) -> None:
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    page = watch.page
    page.goto(portal.url + DEPLOYMENT)
    inputs = page.locator("form.try input[type=number]")
    assert inputs.count() > 0
    for index in range(inputs.count()):
        inputs.nth(index).fill("1.5")
    page.get_by_role("button", name="Predict").click()
    answer = page.locator("#try-answer")
    answer.wait_for()
    assert "predictions" in answer.inner_text()
    assert watch.problems == []


def test_the_logs_tail_shows_a_new_line_within_two_seconds(
    portal: Portal, browser_context: BrowserContext
) -> None:
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    page = watch.page
    page.goto(portal.url + DEPLOYMENT)
    page.locator("#logs").wait_for()
    marker = f"portal-e2e {uuid.uuid4().hex}"
    # What a replica prints lands in this file (its stdout and stderr).
    log_file = portal.server.home / "deployments" / "demo" / "cancer-api" / "replicas.log"
    with log_file.open("a") as handle:
        handle.write(f"INFO {marker}\n")
    written = time.monotonic()
    page.locator("#logs", has_text=marker).wait_for(timeout=2_000)
    assert time.monotonic() - written <= 2.5
    assert watch.problems == []


def test_a_viewer_sees_no_deploy_button_and_the_server_refuses_the_post(
    portal: Portal, browser_context: BrowserContext
) -> None:
    watch = watched(browser_context)
    log_in(watch, portal.url, VIEWER)
    page = watch.page
    assert page.get_by_role("link", name="Deploy").count() == 0
    page.goto(portal.url + DEPLOYMENT)
    assert page.get_by_role("link", name="Change this deployment").count() == 0
    assert page.get_by_role("button", name=re.compile("Roll back")).count() == 0
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    refused = page.request.post(
        f"{portal.url}/portal/deploy",
        form={"csrf_token": csrf or "", "project": "demo", "model": "cancer", "name": "x",
              "ref": "cancer/1", "update": "0"},
        headers={"Origin": portal.url},
    )  # fmt: skip
    assert refused.status == 403
    with portal.client() as admin:
        assert [d.name for d in admin.deployments.list(project="demo").items] == ["cancer-api"]


def test_one_runs_page_and_one_pipeline_runs_page_pass_the_same_checks(
    portal: Portal, browser_context: BrowserContext
) -> None:
    with portal.client() as admin:
        run = admin.runs.search(project="demo").items[0]
        pipeline_run = admin.pipelines.runs(project="demo", pipeline="retrain").items[0]
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    for path in (f"/runs/demo/{run.id}", f"/pipelines/demo/runs/{pipeline_run.id}"):
        watch.page.goto(portal.url + path)
        watch.page.wait_for_load_state("networkidle")
        assert axe_violations(watch.page) == [], path
    assert watch.problems == []


def test_the_heaviest_pages_load_with_little_javascript(
    portal: Portal, browser_context: BrowserContext, capsys: pytest.CaptureFixture[str]
) -> None:
    # The budget is 300 KB of JavaScript a page. The load time is printed, not asserted:
    # a shared CI machine makes timings noise (bench/portal.py measures the server's side).
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    for path in ("/", DEPLOYMENT, "/runs?project=demo"):
        watch.page.goto(portal.url + path)
        watch.page.wait_for_load_state("load")
        figures = watch.page.evaluate(
            """() => {
                const nav = performance.getEntriesByType("navigation")[0];
                const scripts = performance.getEntriesByType("resource")
                    .filter(r => r.initiatorType === "script");
                return {load_ms: nav.loadEventEnd - nav.startTime,
                        js_bytes: scripts.reduce((n, r) => n + r.decodedBodySize, 0)};
            }"""
        )
        with capsys.disabled():
            print(f"\n{path}: loaded in {figures['load_ms']:.0f} ms, {figures['js_bytes']:,} B JS")
        assert figures["js_bytes"] <= 300 * 1024, path
    assert watch.problems == []
