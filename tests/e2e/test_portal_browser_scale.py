"""The runs page in a real browser (Debian's Chromium through Playwright) against ``loopml up``
on a store filled in bulk with 100,000 runs: it pages and sorts on the server, and logs no
console error, failed request or request to an outside host."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from loopml.store import MetadataStore
from tests.portal_scale import fill_runs, load_figures

from .conftest import running_server
from .portal_watch import watched

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(900)]


SCALE_RUNS = 100_000
SCALE_METRICS = 3


@pytest.fixture(scope="module")
def many_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """``loopml up`` (authentication off) on a fresh home whose store was filled in bulk
    with 100,000 runs x 3 metrics before it started; its URL, and the names of the 150 runs
    with the highest ``m1``, best first, as the database orders them."""
    from sqlalchemy import text

    home = tmp_path_factory.mktemp("portal-scale-home")
    store = MetadataStore(f"sqlite:///{home / 'loopml.db'}")
    store.upgrade()
    fill_runs(store, "default", SCALE_RUNS, SCALE_METRICS)
    with store.session() as session:
        best = session.execute(
            text(
                "SELECT runs.name FROM latest_metrics JOIN runs ON runs.id = latest_metrics.run_id"
                " WHERE latest_metrics.key = 'm1' ORDER BY latest_metrics.value DESC LIMIT 150"
            )
        )
        names = [row[0] for row in best]
    store.dispose()
    with running_server(home) as server:
        yield server.url, names


def test_the_runs_page_with_100000_runs_pages_and_sorts(
    many_runs: tuple[str, list[str]],
    browser_context: BrowserContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, best = many_runs
    watch = watched(browser_context)
    page = watch.page
    pager = page.locator("nav.pager")
    loads: list[str] = []

    def shown(step: str) -> tuple[list[str], list[float]]:
        """The names and first metric column of the rows on the page now; its load time."""
        figures = load_figures(page)
        loads.append(f"{step} {figures['load_ms']:.0f} ms (HTML in {figures['response_ms']:.0f})")
        rows = page.locator("table.runs tbody tr")
        names = rows.locator("td:nth-child(2)").all_inner_texts()
        values = [float(v) for v in rows.locator("td:nth-child(6)").all_inner_texts()]
        return names, values

    page.goto(f"{url}/runs?project=default")
    names, _ = shown("first page")
    assert page.get_by_role("heading", name="Runs in default").is_visible()
    # Newest first: the fill starts run-000000 first, a second apart.
    assert names == [f"run-{i:06d}" for i in range(SCALE_RUNS - 1, SCALE_RUNS - 51, -1)]
    assert "Page 1, runs 1\u201350" in pager.inner_text()

    with page.expect_navigation():
        page.get_by_role("columnheader").get_by_role("link", name="m1", exact=True).click()
    assert re.search(r"sort=metrics\.m1.*order=desc", page.url), page.url
    names, values = shown("sorted by m1")
    assert (
        page.get_by_role("columnheader", name=re.compile("^m1")).get_attribute("aria-sort")
        == "descending"
    )
    assert names == best[:50]
    assert values == sorted(values, reverse=True)

    for step, rows in (("next", best[50:100]), ("next", best[100:150]), ("previous", best[50:100])):
        link = "Next" if step == "next" else "Previous"
        with page.expect_navigation():
            pager.get_by_role("link", name=link, exact=True).click()
        names, values = shown(step)
        assert names == rows, step
        assert values == sorted(values, reverse=True), step
    assert "Page 2, runs 51\u2013100" in pager.inner_text()
    with capsys.disabled():
        print(f"\nruns page, {SCALE_RUNS:,} runs, load (Navigation Timing): " + ", ".join(loads))
    assert watch.problems == []
