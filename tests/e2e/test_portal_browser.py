"""The portal in a real browser (Debian's Chromium through Playwright) against a real
``loopml up`` with authentication on and the demo's data: a user logs in and walks every
page; no page logs a console error or a failed request, and axe-core finds no serious or
critical accessibility violation."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from loopml.client import Client
from tests.portal_scale import JS_BUDGET_BYTES, load_figures

from .conftest import LOOPML, RunningServer, base_env, running_server
from .portal_watch import assert_accessible_in_both_themes, log_in, outside, watched
from .test_demo import DEMO_ARGS, check_the_demo_told

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(900)]

ADMIN = ("root", "a long admin passphrase 1")
VIEWER = ("vera", "a long viewer passphrase 1")


@dataclass
class Portal:
    """The running server, the admin's API token, and the demo's names."""

    server: RunningServer
    token: str
    demo_out: str
    told: AssertionError | None
    """Where what the demo said differed from what it left, checked before any test ran."""

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
        # The demo waits for the monitor to have read the champion's labelled traffic before
        # it says what the monitor shows: every second, 4 s behind, not every 30 s, 10 s behind.
        "LOOPML_MONITOR_INTERVAL_S": "1",
        "LOOPML_MONITOR_LAG_S": "4",
    }
    _cli({**base_env(home), **secured}, "users", "create-admin", ADMIN[0], "--password-stdin",
         stdin=ADMIN[1] + "\n")  # fmt: skip
    with running_server(home, secured) as server:
        with Client(server.url) as anonymous:
            token = str(anonymous.login(ADMIN[0], ADMIN[1], expires_in_days=1)["token"])
        env = {**server.env, "LOOPML_TOKEN": token}
        demo_out = _cli(env, "demo", *DEMO_ARGS, timeout=640)
        # Before any page (or test) changes what the demo left: the tests run in any order.
        told = None
        try:
            check_the_demo_told(dataclasses.replace(server, env=env), demo_out, "promote")
        except AssertionError as error:  # the test below reports it
            told = error
        with Client(server.url, token=token) as admin:
            admin.users.create(VIEWER[0], VIEWER[1])
            admin.users.set_role("demo", VIEWER[0], "viewer")
        yield Portal(server, token, demo_out, told)


PAGES = [
    "/",
    "/projects/demo/deployments/cancer-api",
    "/deploy",
    "/deploy?project=demo&model=cancer",
    "/deploy?project=demo&name=cancer-api",
    "/models",
    "/models/demo/cancer",
    "/models/demo/cancer/compare?a=1&b=2",
    "/runs?project=demo",
    "/runs/compare?project=demo&ids={runs}",
    "/data?project=demo",
    "/data/demo/tables/patients",
    "/data/demo/sql?q=SELECT+*+FROM+patients+ORDER+BY+1+LIMIT+20",
    "/pipelines?project=demo",
    "/pipelines/demo/retrain",
    "/settings",
    "/docs",
    "/docs/try",
]
"""Every page walked by the accessibility and console checks; ``{runs}`` is the demo's runs'
ids (up to 3), comma-separated. A run's page and a pipeline run's page are walked by their
own test below (their ids come from the data)."""


def test_the_demo_told_its_promote_scenario_and_its_lines_work_with_the_users_token(
    portal: Portal,
) -> None:
    """CI's one run of the ``promote`` scenario is this module's demo (test_demo.py runs
    ``refuse``), checked by the module's fixture as soon as the demo ended, before any page
    could change what it left (the tests run in any order), and reported here."""
    if portal.told is not None:
        raise portal.told


def test_the_overview_shows_the_demo_deployment_after_login(
    portal: Portal, browser_context: BrowserContext
) -> None:
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    page = watch.page
    assert page.get_by_role("heading", name="Overview").is_visible()
    link = page.get_by_role("link", name="cancer-api")
    assert link.is_visible()
    # The Replicas tile is the sum of the rows: replicas running now and what they use now
    # (after the demo's swap, the hour's windows also hold cancer/1's stopped replica).
    tile = page.locator(".tile", has=page.get_by_role("heading", name="Replicas"))
    count = int(tile.locator(".big").inner_text())
    used = re.fullmatch(
        r"running now: ([\d.]+) % CPU, ([\d,]+) MB", tile.locator("p").nth(1).inner_text()
    )
    assert used, tile.inner_text()
    rows = [
        [c.inner_text() for c in r.locator("td").all()]
        for r in page.locator("#dep-h ~ table tbody tr").all()
    ]
    assert count == sum(int(r[4]) for r in rows) >= 1
    assert float(used.group(1)) == pytest.approx(sum(float(r[8]) for r in rows), abs=0.1)
    memory = sum(float(r[9].replace(",", "")) for r in rows)
    assert float(used.group(2).replace(",", "")) == pytest.approx(memory, abs=len(rows))
    assert watch.problems == []


SCREEN = {"width": 1280, "height": 800}
MAX_PAGE_HEIGHT_PX = 4_000
"""A page taller than this at 1,280 px wide is too long to read: split it or fold it."""


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each walked page's screenshot at 1,280 x 800 is written (the test prints it)."""
    return tmp_path_factory.mktemp("portal-screenshots")


def assert_short_and_shot(page: Any, path: str, screenshots: Path) -> None:
    """Write the page's screenshot at 1,280 x 800 (printed) and fail if it is too tall, or
    wider than the window (a wide table scrolls in place, the page never sideways)."""
    shot = screenshots / (re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")[:80] or "overview")
    page.screenshot(path=f"{shot}.png")
    print(f"screenshot of {path}: {shot}.png")
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height <= MAX_PAGE_HEIGHT_PX, f"{path} is {height} px tall (see {shot}.png)"
    width, window = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width <= window, f"{path} is {width} px wide in a {window} px window (see {shot}.png)"


@pytest.mark.parametrize("path", PAGES)
def test_no_page_is_too_tall_has_a_console_error_a_failed_request_or_a_serious_axe_violation(
    portal: Portal, browser_context: BrowserContext, screenshots: Path, path: str
) -> None:
    if "{runs}" in path:
        with portal.client() as admin:
            runs = admin.runs.search(project="demo").items[:3]
        assert len(runs) >= 2
        path = path.format(runs=",".join(r.id for r in runs))
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    watch.page.set_viewport_size(SCREEN)
    answer = watch.page.goto(portal.url + path)
    assert answer is not None
    assert answer.status == 200, path
    watch.page.wait_for_load_state("networkidle")
    assert_short_and_shot(watch.page, path, screenshots)
    if path != "/docs/try":  # Swagger UI is a third party's page, checked for errors only
        assert_accessible_in_both_themes(watch.page, path)
    assert watch.problems == []


def test_the_api_reference_opens_an_operation_and_swagger_ui_tries_it(
    portal: Portal, browser_context: BrowserContext
) -> None:
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    page = watch.page
    page.goto(portal.url + "/docs")
    # Drawn on the server: the tags are in the page as it arrives, no script draws them
    # (Swagger UI took 7.6 s on a loaded 2-core machine to draw its first tag).
    tag = page.locator("#tag-deployments > summary")
    assert tag.is_visible()
    tag.click()
    operation = page.locator("#op-get_deployment_api_v1_projects__project__deployments__name__get")
    summary = operation.locator("summary")
    assert "/api/v1/projects/{project}/deployments/{name}" in summary.inner_text()
    summary.click()
    parameters = operation.locator("table")
    assert parameters.is_visible()
    names = parameters.locator("tbody td:first-child code").all_inner_texts()
    assert names == ["project", "name"], names
    assert "The project that owns the deployments." in parameters.inner_text()
    # A schema's link opens the schemas' fold and lands on it.
    operation.get_by_role("link", name="Deployment", exact=True).click()
    assert page.locator("#schema-Deployment > summary").is_visible()
    assert page.evaluate("location.hash") == "#schema-Deployment"

    # Its "try" link: Swagger UI 5 (4 read FastAPI's OpenAPI 3.1 document as "does not
    # specify a valid version field" and drew nothing) opens the same operation.
    operation.get_by_role("link", name=re.compile("in Swagger UI")).click()
    swagger = page.locator(
        "#operations-deployments-get_deployment_api_v1_projects__project__deployments__name__get"
    )
    # Drawn by script from a 1.4 MB bundle: 7.6 s on a loaded 2-core machine.
    swagger.wait_for(timeout=60_000)
    assert page.get_by_text("OAS 3.1", exact=True).is_visible()
    assert page.get_by_text("Unable to render this definition").count() == 0
    shown = swagger.locator(".parameters")
    shown.wait_for(timeout=30_000)  # the deep link opened it
    drawn = shown.locator(".parameter__name").all_inner_texts()
    assert [n.split()[0].rstrip("*") for n in drawn] == ["project", "name"], drawn
    # Swagger UI 5 logs this for any deep link holding "_", which FastAPI's operation ids
    # all do (it reads "_" as an escaped space, and still opens the operation, as above).
    deprecated = "console error: Deprecated: escaping deep link whitespace with `_`"
    assert [p for p in watch.problems if not p.startswith(deprecated)] == []


DEPLOYMENT = "/projects/demo/deployments/cancer-api"


def test_a_canary_deployed_from_the_form_shows_its_split_on_the_detail_page(
    portal: Portal, browser_context: BrowserContext, screenshots: Path
) -> None:
    """The split on the page, which passes the page checks with its canary too, then the
    canary dropped from the page: the demo's one version takes every request again (the
    other tests of this module, in any order, see the deployment as the demo left it)."""
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    page = watch.page
    page.set_viewport_size(SCREEN)
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
    page.wait_for_load_state("networkidle")
    assert_short_and_shot(page, DEPLOYMENT + "#canary", screenshots)
    assert_accessible_in_both_themes(page, DEPLOYMENT + " with a canary")
    page.get_by_role("button", name="Drop the canary").click()
    page.wait_for_url(f"{portal.url}{DEPLOYMENT}")
    assert "100 %" in page.get_by_role("table").first.inner_text()
    with portal.client() as admin:
        after = admin.deployments.get("cancer-api", project="demo")
    assert after.spec.canary is None
    assert sorted(after.traffic.values()) == [100], after.traffic
    assert watch.problems == []


def _run_snippet(snippet: str, kind: str, token: str) -> Any:
    """Run a snippet as a user pastes it (curl in bash, Python with the test environment's
    interpreter), with only ``PATH`` and ``LOOPML_TOKEN`` set; what it printed, decoded."""
    command = ["bash", "-c", snippet] if kind == "curl" else [sys.executable, "-c", snippet]
    done = subprocess.run(
        command,
        env={"PATH": "/usr/bin:/bin", "LOOPML_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{snippet}\n{done.stdout}\n{done.stderr}"
    # curl prints the JSON answer; the Python snippets print the decoded value (its repr).
    return json.loads(done.stdout) if kind == "curl" else ast.literal_eval(done.stdout.strip())


SNIPPET_TABS = {"curl": "curl", "python": "Python", "v2-curl": "V2 curl", "v2-python": "V2 Python"}


@pytest.mark.parametrize("snippet", list(SNIPPET_TABS))
def test_each_snippet_copied_from_the_page_predicts_as_pasted(
    portal: Portal, browser_context: BrowserContext, snippet: str
) -> None:
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    watch.page.goto(portal.url + DEPLOYMENT)
    # The snippets are tabs: one shows at a time, the first (curl) to begin with.
    tab = watch.page.get_by_role("tab", name=SNIPPET_TABS[snippet], exact=True)
    tab.click()
    assert tab.get_attribute("aria-selected") == "true"
    shown = watch.page.locator(".snippet pre").evaluate_all(
        "pres => pres.filter(p => p.checkVisibility()).map(p => p.id)"
    )
    assert shown == [f"snippet-{snippet}"]
    text = watch.page.locator(f"#snippet-{snippet}").inner_text()
    answer = _run_snippet(text, snippet.rpartition("-")[2], portal.token)
    if snippet.startswith("v2"):
        assert text.startswith("curl" if snippet == "v2-curl" else "import")
        outputs = answer["outputs"] if snippet == "v2-curl" else answer
        predict = next(o for o in outputs if o["name"] == "predict")
        assert predict["shape"] == [1], answer
        assert len(predict["data"]) == 1, answer
    else:
        assert len(answer["predictions"]) == 1, answer
    assert watch.problems == []


def test_the_copy_button_puts_the_snippet_on_the_clipboard(
    portal: Portal, chromium: Browser
) -> None:
    context = chromium.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        watch = watched(context)
        log_in(watch, portal.url, ADMIN)
        page = watch.page
        page.goto(portal.url + DEPLOYMENT)
        for snippet in ("curl", "v2-python"):
            page.get_by_role("tab", name=SNIPPET_TABS[snippet], exact=True).click()
            button = page.locator(f'button[data-copy="snippet-{snippet}"]')
            button.click()
            page.locator(f"#snippet-{snippet}-note", has_text="Copied.").wait_for(timeout=2_000)
            copied = page.evaluate("navigator.clipboard.readText()")
            assert copied == page.locator(f"#snippet-{snippet}").text_content()
        assert watch.problems == []
    finally:
        context.close()


def test_without_the_clipboard_api_copy_falls_back_to_the_selection(
    portal: Portal, chromium: Browser
) -> None:
    # Plain HTTP on a host other than localhost is not a secure context: no
    # navigator.clipboard there. The page must still copy (or at least select) the snippet.
    context = chromium.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        reader = context.new_page()
        watch = watched(context)
        log_in(watch, portal.url, ADMIN)
        reader.goto(portal.url + "/login")
        reader.evaluate("navigator.clipboard.writeText('nothing copied yet')")
        page = watch.page
        page.add_init_script(
            "Object.defineProperty(navigator, 'clipboard', {value: undefined, configurable: true})"
        )
        page.goto(portal.url + DEPLOYMENT)
        assert page.evaluate("navigator.clipboard === undefined")
        page.locator('button[data-copy="snippet-curl"]').click()
        snippet = page.locator("#snippet-curl").text_content()
        assert page.evaluate("window.getSelection().toString()") == snippet
        note = page.locator("#snippet-curl-note").text_content()
        assert note == "Copied.", note  # Chromium lets execCommand("copy") write here
        assert reader.evaluate("navigator.clipboard.readText()") == snippet
        assert watch.problems == []
    finally:
        context.close()


def test_the_theme_button_switches_the_theme_and_remembers_it(
    portal: Portal, chromium: Browser
) -> None:
    context = chromium.new_context(color_scheme="light")
    try:
        watch = watched(context)
        log_in(watch, portal.url, ADMIN)
        page = watch.page
        theme = "document.documentElement.getAttribute('data-theme')"
        background = "getComputedStyle(document.body).backgroundColor"
        assert page.evaluate(theme) == "auto"
        light = page.evaluate(background)
        toggle = page.get_by_role("button", name="Switch between dark and light theme")
        toggle.click()
        assert page.evaluate(theme) == "dark"
        dark = page.evaluate(background)
        assert dark != light
        assert page.evaluate("localStorage.getItem('loopml-theme')") == "dark"
        page.goto(portal.url + DEPLOYMENT)  # another page keeps the choice
        assert page.evaluate(theme) == "dark"
        assert page.evaluate(background) == dark
        page.get_by_role("button", name="Switch between dark and light theme").click()
        assert page.evaluate(theme) == "light"
        assert page.evaluate(background) == light
        # The button works from the keyboard too.
        page.get_by_role("button", name="Switch between dark and light theme").focus()
        page.keyboard.press("Enter")
        assert page.evaluate(theme) == "dark"
        assert watch.problems == []
    finally:
        context.close()


def test_a_request_to_an_outside_host_is_reported(
    portal: Portal, browser_context: BrowserContext
) -> None:
    # The guard itself: a page that reaches out is caught (the request is aborted here,
    # nothing leaves the machine).
    watch = watched(browser_context)
    watch.page.route("http://cdn.example.invalid/**", lambda route: route.abort())
    watch.page.goto(portal.url + "/login")
    watch.page.evaluate("fetch('http://cdn.example.invalid/htmx.js').catch(() => null)")
    watch.page.wait_for_load_state("networkidle")
    assert "request to an outside host: http://cdn.example.invalid/htmx.js" in watch.problems
    assert not outside(portal.url + "/static/loopml.js")
    assert not outside("data:image/svg+xml,<svg/>")


def test_the_try_it_form_predicts(portal: Portal, browser_context: BrowserContext) -> None:
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    page = watch.page
    page.goto(portal.url + DEPLOYMENT)
    inputs = page.locator("form.try input[type=number]")
    assert inputs.count() > 0
    for index in range(inputs.count()):
        inputs.nth(index).fill("1.5")
    page.set_viewport_size(SCREEN)
    page.get_by_role("button", name="Predict", exact=True).click()
    answer = page.locator("#try-answer")
    answer.wait_for()
    assert "predictions" in answer.inner_text()
    # The answer's page opens at the form: the answer is on screen, not 2,000 px below.
    top = answer.evaluate("e => e.getBoundingClientRect().top")
    assert 0 <= top < SCREEN["height"], top
    assert watch.problems == []
    # Loading the answer's address again (a second tab: leaving this one would cut its
    # logs poll short) is the deployment page at the form, not a 405 in raw JSON.
    other = browser_context.new_page()
    other.set_viewport_size(SCREEN)
    again = other.goto(page.url.partition("#")[0])
    assert again is not None
    assert again.status == 200
    assert other.url == f"{portal.url}{DEPLOYMENT}#try-h"
    heading = other.get_by_role("heading", name="Try it", exact=True)
    assert 0 <= heading.evaluate("e => e.getBoundingClientRect().top") < SCREEN["height"]
    other.close()


def _chart_axis(page: Any) -> dict[str, Any]:
    """The requests chart's time axis as uPlot drew it, and its points."""
    found: dict[str, Any] = page.evaluate(
        """() => { const u = document.getElementById('chart-rps').uplot;
                   return {min: u.scales.x.min, max: u.scales.x.max, t: u.data[0]}; }"""
    )
    return found


def test_the_usage_charts_span_the_period_shown(
    portal: Portal, browser_context: BrowserContext
) -> None:
    # The axis ran "May 2027 ... May 2029" around one dot: a single window's start padded.
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    page = watch.page
    asked_seconds = time.time()
    page.goto(portal.url + DEPLOYMENT)
    page.wait_for_load_state("networkidle")
    axis = _chart_axis(page)
    drawn_seconds = time.time()
    assert axis["max"] - axis["min"] == pytest.approx(3600, abs=1)  # the last hour
    # The axis ends when the page was made (a minute either side for its windows' edges):
    # two readings of the clock around the page, not a bound on how long it took.
    end_seconds = axis["max"]
    assert asked_seconds - 60 <= end_seconds <= drawn_seconds + 60, (asked_seconds, axis)
    assert len(axis["t"]) == 60  # a point a minute: the monitor's usage-only 1m windows
    assert all(axis["min"] <= t <= axis["max"] for t in axis["t"])
    page.get_by_role("link", name="last 24 h").click()
    page.wait_for_load_state("networkidle")
    axis = _chart_axis(page)
    assert axis["max"] - axis["min"] == pytest.approx(86_400, abs=1)
    assert len(axis["t"]) == 24  # the demo's monitor keeps 1h windows: a point an hour
    assert page.get_by_role("link", name="last 24 h").get_attribute("aria-current") == "true"
    assert watch.problems == []


def test_the_logs_tail_shows_a_new_line_at_its_next_poll(
    portal: Portal, browser_context: BrowserContext
) -> None:
    """A line a replica prints is on the page at the first poll after it (the tail polls
    every second): asserted on the polls themselves, not on a clock, which a loaded machine
    stretches."""
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    page = watch.page
    page.goto(portal.url + DEPLOYMENT)
    logs = page.locator("#logs")
    logs.wait_for()
    assert logs.get_attribute("hx-trigger") == "every 1s"
    marker = f"portal-e2e {uuid.uuid4().hex}"
    # What a replica prints lands in this file (its stdout and stderr).
    log_file = portal.server.home / "deployments" / "demo" / "cancer-api" / "replicas.log"
    with log_file.open("a") as handle:
        handle.write(f"INFO {marker}\n")
    written_ms = time.time() * 1000
    # A poll the browser began (its own start time, the same clock) after the line was
    # written carries it: no answer is cached or held back. The timeouts are hang guards.
    poll = page.wait_for_event(
        "requestfinished",
        lambda r: "/logs?" in r.url and r.timing["startTime"] > written_ms,
        timeout=120_000,
    )
    answer = poll.response()
    assert answer is not None
    assert marker in answer.text(), answer.text()[-2000:]
    logs.filter(has_text=marker).wait_for(timeout=120_000)  # and the page shows it
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
    portal: Portal, browser_context: BrowserContext, screenshots: Path
) -> None:
    with portal.client() as admin:
        run = admin.runs.search(project="demo").items[0]
        pipeline_run = admin.pipelines.runs(project="demo", pipeline="retrain").items[0]
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    watch.page.set_viewport_size(SCREEN)
    for path in (f"/runs/demo/{run.id}", f"/pipelines/demo/runs/{pipeline_run.id}"):
        watch.page.goto(portal.url + path)
        watch.page.wait_for_load_state("networkidle")
        assert_short_and_shot(watch.page, path, screenshots)
        assert_accessible_in_both_themes(watch.page, path)
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
        figures = load_figures(watch.page)
        with capsys.disabled():
            print(f"\n{path}: loaded in {figures['load_ms']:.0f} ms, {figures['js_bytes']:,} B JS")
        assert figures["js_bytes"] <= JS_BUDGET_BYTES, path
    assert watch.problems == []


def _focused(page: Any) -> dict[str, Any]:
    """What has the keyboard focus: its tag, name, text, whether it is inside ``main`` and
    whether its focus ring shows."""
    found: dict[str, Any] = page.evaluate(
        """() => {
            const e = document.activeElement;
            const style = getComputedStyle(e);
            return {tag: e.tagName.toLowerCase(), name: e.getAttribute('name'),
                    text: (e.textContent || '').trim(), inMain: !!e.closest('main'),
                    ring: style.outlineStyle !== 'none' && style.outlineWidth !== '0px'};
        }"""
    )
    return found


def test_the_login_page_passes_axe_and_logs_in_by_keyboard_alone(
    portal: Portal, browser_context: BrowserContext
) -> None:
    watch = watched(browser_context)
    page = watch.page
    page.goto(f"{portal.url}/login")
    page.wait_for_load_state("networkidle")
    assert_accessible_in_both_themes(page, "/login")
    assert _focused(page)["name"] == "user"  # the form takes the focus on arrival
    page.keyboard.type(ADMIN[0])
    page.keyboard.press("Tab")
    assert _focused(page)["name"] == "password"
    page.keyboard.type(ADMIN[1])
    page.keyboard.press("Enter")
    page.wait_for_url(f"{portal.url}/")
    page.wait_for_load_state("networkidle")
    assert watch.problems == []


def test_the_keyboard_skips_to_the_content_with_a_visible_focus(
    portal: Portal, browser_context: BrowserContext
) -> None:
    watch = watched(browser_context)
    log_in(watch, portal.url, ADMIN)
    page = watch.page
    page.goto(f"{portal.url}{DEPLOYMENT}")
    page.wait_for_load_state("networkidle")
    page.keyboard.press("Tab")
    first = _focused(page)
    assert (first["tag"], first["text"]) == ("a", "Skip to content")
    assert page.get_by_role("link", name="Skip to content").is_visible()  # shown when focused
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    inside = _focused(page)
    assert inside["inMain"], inside
    assert inside["ring"], inside
    assert watch.problems == []


READ_WITHOUT_SCRIPTS = {
    "/": ("cancer-api", "main table"),
    DEPLOYMENT: ("Revisions", "main table"),
    "/runs?project=demo": ("Compare selected", "main table"),
    "/models/demo/cancer": ("Lineage of version", "main svg"),
    "/pipelines/demo/retrain": ("Recent runs", "main svg"),
    "/data/demo/tables/patients": ("Column profiles", "main table"),
}
"""Pages, a text each shows and what it draws on the server (a table, a picture), with
JavaScript off."""


def test_the_pages_read_without_javascript(portal: Portal, chromium: Browser) -> None:
    context = chromium.new_context(java_script_enabled=False)
    try:
        watch = watched(context)
        log_in(watch, portal.url, ADMIN)  # a plain form post
        for path, (text, drawn) in READ_WITHOUT_SCRIPTS.items():
            answer = watch.page.goto(portal.url + path)
            assert answer is not None
            assert answer.status == 200, path
            main = watch.page.locator("main").inner_text()
            assert text in main, (path, main[:500])
            assert watch.page.locator(drawn).count() >= 1, (path, drawn)
        assert watch.problems == []
    finally:
        context.close()
