"""What the portal's browser tests watch on every page: console errors, failed requests,
error answers and any request to a host other than the test server's; the login, and
axe-core's check in both themes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Request

SERIOUS = frozenset({"serious", "critical"})


@dataclass
class Watched:
    """A page with what went wrong on it: console errors, failed requests and requests to a
    host other than the test server's."""

    page: Page
    problems: list[str]


LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
"""The test server's hosts: a request to any other is a failure (no CDN, no outside host)."""
HOSTLESS = frozenset({"data", "blob", "about"})


def outside(url: str) -> bool:
    """Whether ``url`` leaves the test server (a ``data:`` or ``blob:`` URL does not)."""
    parts = urlsplit(url)
    return parts.scheme not in HOSTLESS and parts.hostname not in LOCAL_HOSTS


ABORTED = "net::ERR_ABORTED"


def watched(context: BrowserContext) -> Watched:
    page = context.new_page()
    problems: list[str] = []
    # Main-frame navigations begun so far, whether one is still on its way (begun, its page
    # not yet shown), and for each request how many had begun when it began and whether one
    # was on its way. A request the page still had in flight when it navigated away (a click
    # on a link, a form posted, while the logs poll is out) is cancelled by the browser:
    # net::ERR_ABORTED with nothing shown to the person. That includes a poll sent while a
    # posted form waits for its answer: the old page still runs its timers until the new one
    # is shown. Any other failure, or an abort with no navigation after or around it, is a
    # problem.
    navigations = [0]
    on_its_way = [False]
    began: dict[Request, tuple[int, bool]] = {}

    def leaving(kind: str, url: str) -> None:
        if outside(url):
            problems.append(f"{kind} to an outside host: {url}")

    def requested(request: Request) -> None:
        leaving("request", request.url)
        if request.is_navigation_request() and request.frame == page.main_frame:
            navigations[0] += 1  # this navigation leaves behind what began before it
            on_its_way[0] = True
        began[request] = (navigations[0], on_its_way[0])

    def shown(frame: Any) -> None:
        if frame == page.main_frame:
            on_its_way[0] = False

    def failed(request: Request) -> None:
        count, during = began.get(request, (navigations[0], False))
        left_behind = count < navigations[0] or (during and not request.is_navigation_request())
        if request.failure == ABORTED and left_behind:
            return
        problems.append(f"request failed: {request.url} {request.failure}")

    page.on("framenavigated", shown)
    page.on("request", requested)
    page.on("websocket", lambda w: leaving("websocket", w.url))
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", failed)
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


def assert_accessible_in_both_themes(page: Page, what: str) -> None:
    """axe-core finds no serious or critical violation on the page in the light theme nor
    in the dark one (the theme switch's attribute, set as the ◐ button sets it)."""
    for theme in ("light", "dark"):
        page.evaluate(f"document.documentElement.setAttribute('data-theme', '{theme}')")
        found = axe_violations(page)
        named = [
            (v["id"], v.get("help"), [n.get("target") for n in v.get("nodes", [])][:5])
            for v in found
        ]
        assert found == [], f"{what} ({theme} theme): {named}"
