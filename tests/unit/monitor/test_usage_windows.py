"""Usage-only windows (``monitor.usage_window``, 1 minute by default): the engine writes them
beside the judged windows from the same rows, nothing that judges drift, quality, canaries
or alerts reads them, they go after ``usage_retention_days``, and the deployment page's
chart draws the last hour from them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from loopml.core.alerts import AlertRuleSpec
from loopml.faces.context import AppContext
from loopml.monitor import service
from loopml.monitor.compare import figures_since, judged_size
from loopml.monitor.reference import Reference, profile_table
from loopml.monitor.reference_store import save_reference
from loopml.monitor.usage_windows import USAGE_ONLY
from loopml.portal.pages._usage_chart import stored_sizes, usage_chart
from loopml.settings import MonitorSettings
from loopml.store import monitor as rows
from tests.unit.monitor.logged import log_labels, log_predictions, monitor_at, monitor_settings


def _frame(rng: np.random.Generator, count: int, shift_b: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"a": rng.normal(0, 1, count), "b": rng.normal(shift_b, 1, count)})


def _guesses(frame: pd.DataFrame) -> Any:
    return (frame["a"] + frame["b"] > 0).astype(int).to_numpy()


def _serve(ctx: AppContext, frame: pd.DataFrame, at: datetime, prefix: str) -> list[Any]:
    """``frame`` answered at ``at``, 50 rows a request."""
    return log_predictions(ctx, "churn-api", frame, at, _guesses(frame), prefix=prefix)


def _reference(ctx: AppContext, rng: np.random.Generator) -> None:
    train = _frame(rng, 3000)
    profile = profile_table(
        pa.Table.from_pandas(train),
        {"a": "numeric", "b": "numeric"},
        task="classification",
        predictions=_guesses(train),
        classes=["0", "1"],
    )
    reference = Reference(status="ready", source="test training rows", profile=profile)
    save_reference(ctx.store, "default", "churn", 1, reference)


def _windows(ctx: AppContext, size: str) -> list[dict[str, Any]]:
    with ctx.store.session() as session:
        return rows.list_windows(session, "default", "churn-api", size=size, limit=500)


def test_minute_windows_hold_the_hours_usage_and_nothing_else(store_ctx: AppContext) -> None:
    rng = np.random.default_rng(1)
    _reference(store_ctx, rng)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    # 2 requests in minute 5, 3 in minute 6 (two batches 30 s apart), 1 in minute 40.
    for at, count, prefix in (
        (hour + timedelta(minutes=5, seconds=10), 100, "a"),
        (hour + timedelta(minutes=6), 100, "b"),
        (hour + timedelta(minutes=6, seconds=30), 50, "c"),
        (hour + timedelta(minutes=40), 50, "d"),
    ):
        _serve(store_ctx, _frame(rng, count), at, prefix)
    report = monitor_at(store_ctx, [hour + timedelta(hours=1)]).tick()
    assert (report.windows, report.usage_windows) == (2, 3)  # 1h and 1d; three minutes

    minutes = sorted(_windows(store_ctx, "1m"), key=lambda w: w["start"])
    assert [w["start"] for w in minutes] == [hour + timedelta(minutes=m) for m in (5, 6, 40)]
    assert [w["summary"]["usage"]["requests"] for w in minutes] == [2, 3, 1]
    assert [w["end"] - w["start"] for w in minutes] == [timedelta(minutes=1)] * 3
    [hourly] = _windows(store_ctx, "1h")
    assert (
        hourly["summary"]["usage"]["requests"]
        == 6
        == sum(w["summary"]["usage"]["requests"] for w in minutes)
    )
    assert hourly["rows"] == 300 == sum(w["rows"] for w in minutes)
    assert hourly["summary"]["drift"]["status"] == "ready"
    for minute in minutes:  # usage counts only: no drift sketches, no quality
        assert set(minute["state"]) == {"usage"}
        assert minute["labels"] == 0
        assert minute["summary"]["drift"] == {"status": "off", "reason": USAGE_ONLY}
        assert minute["summary"]["usage"]["latency_p50_ms"] == pytest.approx(2.0, rel=0.15)

    # The listing shows the size asked for: the hour's window unless the minutes are asked.
    listed = service.list_windows(store_ctx.store, "default", "churn-api", size="1h")
    assert [w["size"] for w in listed] == ["1h"]
    asked = service.list_windows(store_ctx.store, "default", "churn-api", size="1m")
    assert [w["summary"]["usage"]["requests"] for w in asked] == [1, 3, 2]  # newest first


def test_drift_alerts_and_the_canary_judge_read_the_judged_windows_only(
    store_ctx: AppContext,
) -> None:
    """Fails if drift episodes, alert rules or the canary judge read the usage-only size:
    its windows carry no drift and no labels, so nothing would be detected or judged."""
    rng = np.random.default_rng(2)
    _reference(store_ctx, rng)
    spec = AlertRuleSpec(
        name="drifting",
        deployment="churn-api",
        metric="drift_share",
        comparator=">",
        threshold=0.4,
        window="1h",
    )
    service.create_rule(store_ctx.store, "default", spec, actor="t")
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    keys = _serve(store_ctx, _frame(rng, 2000, shift_b=2.0), hour + timedelta(minutes=10), "s")
    log_labels(store_ctx, "churn-api", keys[:300], [1] * 300, hour + timedelta(minutes=20))
    monitor = monitor_at(store_ctx, [hour + timedelta(minutes=59)])
    assert monitor.usage == ("1m", 60)
    assert "1m" not in monitor.sizes

    events = monitor.tick().events
    assert _windows(store_ctx, "1m"), "the usage-only windows were written"
    assert "drift.detected" in events  # the episode judged the 1h window
    assert "alert.firing" in events  # the rule summed 1h windows, not minutes
    size = judged_size(monitor.settings)  # what deploy.serving hands the canary judge
    assert size == "1h"
    figures = figures_since(store_ctx.store, "default", "churn-api", hour, size)
    assert figures[("churn", 1)].labels == 300
    assert figures[("churn", 1)].requests == 40


def test_minute_windows_go_after_their_retention_and_the_hours_stay(
    store_ctx: AppContext,
) -> None:
    rng = np.random.default_rng(3)
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    _serve(store_ctx, _frame(rng, 50), now - timedelta(days=3), "old")
    _serve(store_ctx, _frame(rng, 50), now - timedelta(minutes=10), "new")
    monitor = monitor_at(store_ctx, [now], backfill_s=5 * 86_400.0)
    assert monitor.tick().usage_windows == 2
    # Dropped in the same round (the first prunes): 2 days for minutes, 90 for hours.
    assert [w["start"] for w in _windows(store_ctx, "1m")] == [
        (now - timedelta(minutes=10)).replace(second=0)
    ]
    assert len(_windows(store_ctx, "1h")) == 2


def test_the_last_hour_is_drawn_from_minutes_and_a_day_from_hours(store_ctx: AppContext) -> None:
    rng = np.random.default_rng(4)
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    _serve(store_ctx, _frame(rng, 100), now - timedelta(minutes=50), "a")  # 2 requests
    _serve(store_ctx, _frame(rng, 150), now - timedelta(minutes=20), "b")  # 3 requests
    settings = monitor_settings()
    monitor_at(store_ctx, [now]).tick()
    sizes = stored_sizes(settings)
    assert sizes == ["1h", "1d", "1m"]

    hour = usage_chart(store_ctx.store, "default", "churn-api", sizes, "1h", now)
    assert (hour.size, hour.bucket_s, len(hour.series["t"])) == ("1m", 60, 60)
    rates = dict(zip(hour.series["t"], hour.series["rps"], strict=True))
    for ago, requests in ((50, 2), (20, 3)):
        start = (now - timedelta(minutes=ago)).replace(second=0).timestamp()
        assert rates.pop(start) == pytest.approx(requests / 60)
    assert rates.pop(hour.series["t"][-1]) is None  # the minute running: not counted yet
    assert set(rates.values()) == {0.0}  # every other minute: nothing served

    six = usage_chart(store_ctx.store, "default", "churn-api", sizes, "6h", now)
    assert (six.size, six.bucket_s, len(six.series["t"])) == ("1m", 120, 180)
    assert sum(r or 0 for r in six.series["rps"]) * 120 == pytest.approx(5)
    day = usage_chart(store_ctx.store, "default", "churn-api", sizes, "24h", now)
    assert (day.size, day.bucket_s, len(day.series["t"])) == ("1h", 3600, 24)
    assert sum(r or 0 for r in day.series["rps"]) * 3600 == pytest.approx(5)


def test_a_usage_window_that_cannot_add_up_to_the_judged_ones_is_refused() -> None:
    for bad, expected in (
        ("1h", "smaller than the smallest of windows ('1h')"),
        ("7m", "and divide it"),
        ("1x", "invalid window size '1x'"),
    ):
        with pytest.raises(ValueError, match=re.escape(expected)):
            MonitorSettings(usage_window=bad)
    assert MonitorSettings(usage_window="").usage_size() is None
    assert MonitorSettings(windows=["5m", "1h"], usage_window="1m").usage_size() == ("1m", 60)
    # Left at its default where the windows have 1m already: off, those windows draw it.
    assert MonitorSettings(windows=["1m", "1h"]).usage_size() is None
