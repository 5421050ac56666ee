"""The deployment page's usage charts: the time axis spans the period chosen (the last hour
by default), one point per bucket of it, from the monitor's smallest fitting windows."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loopml.core.clock import utcnow
from loopml.monitor.engine import Monitor
from loopml.platform import create_app
from loopml.platform.monitoring import gateway_errors
from loopml.portal.pages._usage_chart import bucket_of, stored_sizes
from loopml.serve.gateway.metrics import GatewayMetrics
from tests.unit.deploy.deploy_support import PackageFiles, package_files, register_files

from .conftest import ORIGIN, portal_settings

SIZES = ["1h", "1d", "1m"]


@pytest.fixture
def minutes(tmp_path: Path, migrated_database_url: str) -> Iterator[TestClient]:
    """Authentication off; the monitor's default windows: 1 h and 1 day judged, and the
    usage-only 1-minute ones the chart draws."""
    settings = portal_settings(tmp_path, migrated_database_url, auth=False)
    assert stored_sizes(settings.monitor) == SIZES
    with TestClient(create_app(settings), base_url=ORIGIN) as client:
        yield client


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> PackageFiles:
    return package_files(tmp_path_factory.mktemp("package") / "pkg")


def _chart(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="usage-data">(.*?)</script>', page)
    assert found, "no chart on the page"
    chart: dict[str, Any] = json.loads(found.group(1))
    return chart


def test_each_period_reads_the_largest_size_that_draws_a_line_and_rolls_up_past_200() -> None:
    assert bucket_of(3600, SIZES) == ("1m", 60)
    assert bucket_of(6 * 3600, SIZES) == ("1m", 120)  # 360 minutes: 2 a point
    assert bucket_of(86_400, SIZES) == ("1h", 3600)
    assert bucket_of(7 * 86_400, SIZES) == ("1h", 3600)
    assert bucket_of(3600, ["1h", "1d"]) == ("1h", 3600)  # nothing smaller is stored


def test_the_time_axis_spans_the_period_shown_with_a_point_a_minute(
    minutes: TestClient, package: PackageFiles
) -> None:
    ctx = minutes.app.state.running.context  # type: ignore[attr-defined]
    register_files(ctx.store, ctx.artifacts, package)
    control = minutes.app.state.running.serving.control  # type: ignore[attr-defined]
    control.create("default", "churn", {"model": "cancer/1", "min_replicas": 0}, actor="t")
    metrics = GatewayMetrics(list)
    now = utcnow()
    clock = [now - timedelta(minutes=20)]
    engine = Monitor(
        ctx.store,
        ctx.artifacts,
        ctx.settings.monitor,
        clock=lambda: clock[0],
        errors=lambda: gateway_errors(metrics),
    )
    engine.tick()  # a first round, before anything is counted
    for ago, failed in ((10, 2), (5, 4)):  # errors counted in two minutes of the hour
        clock[0] = now - timedelta(minutes=ago)
        for _ in range(failed):
            metrics.observe(("default", "churn"), "cancer", "1", "1", 503, 0.01, "unavailable")
        engine.tick()
    page = minutes.get("/projects/default/deployments/churn")
    assert page.status_code == 200, page.text
    chart = _chart(page.text)
    # The axis is the last hour, not a window's start padded by years.
    assert 3599 <= chart["max"] - chart["min"] <= 3600
    assert abs(chart["max"] - now.timestamp()) < 120
    assert chart["bucket_s"] == 60
    assert 59 <= len(chart["t"]) <= 61
    assert all(chart["min"] <= t <= chart["max"] for t in chart["t"])
    assert sorted(e for e in chart["errors"] if e) == [2.0, 4.0]
    # The minute now running is not counted yet: no point, rather than a false drop to 0.
    assert chart["errors"][-1] is None
    assert chart["rps"][-1] is None
    counted = [e for e in chart["errors"] if e is not None]
    assert counted.count(0.0) == len(counted) - 2  # no window: nothing failed
    assert "one point per 1 min, from the monitor's 1m windows" in page.text
    assert '<a href="?period=1h#use-h" aria-current="true">last hour</a>' in page.text
    for period, span, bucket in (("6h", 6 * 3600, 120), ("24h", 86_400, 3600),
                                 ("7d", 7 * 86_400, 3600)):  # fmt: skip
        chart = _chart(minutes.get(f"/projects/default/deployments/churn?period={period}").text)
        assert chart["max"] - chart["min"] == pytest.approx(span, abs=1), period
        assert chart["bucket_s"] == bucket, period
        assert sum(e or 0 for e in chart["errors"]) == 6.0, period
    # A period link keeps what else the page was asked for (the logs' filter).
    filtered = minutes.get("/projects/default/deployments/churn?grep=boot&period=6h").text
    assert '<a href="?grep=boot&amp;period=24h#use-h">last 24 h</a>' in filtered
    wrong = minutes.get("/projects/default/deployments/churn?period=2h")
    assert wrong.status_code == 422
    assert "unknown period &#39;2h&#39;: expected one of 1h, 6h, 24h, 7d" in wrong.text
