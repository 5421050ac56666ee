"""The deployment page's usage charts, drawn by Chromium: a burst inside one minute, with
empty minutes on both sides, shows on the latency and request charts (issue 55, item 3: a
point with no neighbour has no line segment, and the charts stayed empty after 325
requests)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from fastapi.testclient import TestClient

from loopml.core.clock import utcnow
from loopml.monitor.usage import LATENCY_EDGES_MS, empty_usage
from loopml.monitor.usage_windows import usage_window
from loopml.monitor.windows import window_start
from loopml.platform import create_app
from loopml.store import monitor as rows
from tests.unit.deploy.deploy_support import package_files, register_files
from tests.waiting import eventually

from .conftest import ORIGIN, portal_settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

# Pixels of a series' colour on a chart's canvas (the colours deployments.js gives them).
PAINTED = """([id, rgb]) => {
  const canvas = document.querySelector(`#${id} canvas`);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let found = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 128 && Math.abs(data[i] - rgb[0]) < 40
        && Math.abs(data[i + 1] - rgb[1]) < 40 && Math.abs(data[i + 2] - rgb[2]) < 40) {
      found += 1;
    }
  }
  return found;
}"""
P50 = (0x1A, 0x7F, 0x37)
RPS = (0x0A, 0x58, 0xCA)


@pytest.fixture
def portal(tmp_path: Path, migrated_database_url: str) -> Iterator[TestClient]:
    settings = portal_settings(tmp_path, migrated_database_url, auth=False)
    with TestClient(create_app(settings), base_url=ORIGIN) as client:
        yield client


def _burst(portal: TestClient, tmp_path: Path) -> None:
    """One deployment, and 325 requests in a single minute ten minutes ago, in that minute's
    usage-only window and its hour's (the minutes around it hold nothing)."""
    ctx = portal.app.state.running.context  # type: ignore[attr-defined]
    register_files(ctx.store, ctx.artifacts, package_files(tmp_path / "pkg"))
    control = portal.app.state.running.serving.control  # type: ignore[attr-defined]
    control.create("default", "churn", {"model": "cancer/1", "min_replicas": 0}, actor="t")
    moment = utcnow() - timedelta(minutes=10)
    used = empty_usage()
    used["requests"] = used["rows"] = 325
    used["latency"][int(np.searchsorted(LATENCY_EDGES_MS, 3.0, side="right"))] = 325
    with ctx.store.session() as session:
        for size, seconds in (("1m", 60), ("1h", 3600)):
            start = window_start(moment, seconds)
            window = usage_window(used, None, start, seconds, float(seconds))
            rows.put_window(session, "default", ("churn", "cancer", 1, size, start), window)


def _through(portal: TestClient) -> object:
    """Chromium's requests answered by the in-process app."""

    def answer(route: Route) -> None:
        got = portal.get(route.request.url.removeprefix(ORIGIN))
        kept = {"content-type": got.headers.get("content-type", "text/plain")}
        route.fulfill(status=got.status_code, headers=kept, body=got.content)

    return answer


def test_a_burst_inside_one_minute_shows_on_the_charts(
    portal: TestClient, tmp_path: Path, chromium: Browser
) -> None:
    _burst(portal, tmp_path)
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        page: Page = context.new_page()
        page.route(f"{ORIGIN}/**", _through(portal))  # type: ignore[arg-type]
        page.goto(f"{ORIGIN}/projects/default/deployments/churn")
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text))
        page.wait_for_selector("#chart-latency canvas", state="attached")
        page.wait_for_selector("#chart-rps canvas", state="attached")
        assert not errors
        for chart, colour in (("chart-latency", P50), ("chart-rps", RPS)):
            eventually(
                lambda: page.evaluate(PAINTED, [chart, list(colour)]) > 0,  # noqa: B023
                30,
                f"{chart} to draw the minute's point",
            )
    finally:
        context.close()
