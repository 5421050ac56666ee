"""Alert rules read the last stretch of time of their size, summed from the smallest windows,
not the newest tumbling window (nearly empty right after the hour turns); on SQLite and
PostgreSQL, the monitor's rounds run by hand on a chosen clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loopml.core.alerts import AlertRuleSpec
from loopml.faces.context import AppContext
from loopml.monitor import service
from loopml.monitor.engine import Monitor
from loopml.monitor.trailing import span_start
from loopml.settings import Settings
from loopml.store import events
from tests.unit.monitor.test_engine import _log_rows

HOUR = 3600


def _rule(ctx: AppContext, name: str, comparator: str, threshold: float) -> None:
    spec = AlertRuleSpec(
        name=name,
        deployment="churn-api",
        metric="requests",
        comparator=comparator,
        threshold=threshold,
        window="1h",
    )
    service.create_rule(ctx.store, "default", spec, actor="t")


def _states(ctx: AppContext) -> dict[str, tuple[str, Any]]:
    return {r.name: (r.state, r.last_value) for r in service.list_rules(ctx.store, "default")}


def _events(ctx: AppContext) -> list[tuple[str, str]]:
    with ctx.store.session() as session:
        found = events.list_(session, type="alert.*").items
    return [(e.type, e.payload["rule"]) for e in found if e.type.count(".") == 1]


def test_span_start_is_the_window_holding_now_less_the_rule() -> None:
    hour = datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert span_start(hour + timedelta(minutes=2), HOUR, HOUR) == hour - timedelta(hours=1)
    assert span_start(hour, HOUR, HOUR) == hour - timedelta(hours=1)
    assert span_start(hour + timedelta(minutes=2), 86_400, HOUR) == hour - timedelta(hours=24)
    # A rule shorter than the smallest window reads the current one.
    assert span_start(hour + timedelta(minutes=2), 600, HOUR) == hour


def test_a_requests_rule_right_after_the_hour_turns_does_not_fire_and_keeps_hysteresis(
    store_ctx: AppContext,
) -> None:
    ctx = store_ctx
    hour = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    # 60 requests in the hour before, 3 in the minute after it turned.
    _log_rows(
        ctx, "churn-api", [hour - timedelta(minutes=30)] * 60 + [hour + timedelta(minutes=1)] * 3
    )
    _rule(ctx, "traffic-low", "<", 20)  # a drop in traffic
    _rule(ctx, "traffic-high", ">", 50)  # clears under 45
    settings = Settings(monitor={"lag_s": 0, "windows": ["1h", "1d"], "default_rules": []})
    clock = [hour + timedelta(minutes=2)]
    monitor = Monitor(ctx.store, ctx.artifacts, settings.monitor, clock=lambda: clock[0])

    monitor.tick()
    newest = service.list_windows(ctx.store, "default", "churn-api", size="1h", limit=1)[0]
    assert newest["summary"]["usage"]["requests"] == 3  # what the rules read before
    # (hour - 58 min, hour + 2 min]: the 3 and 58/60 of the hour before's 60.
    states = _states(ctx)
    assert states["traffic-low"][0] == "ok"
    assert states["traffic-low"][1] == pytest.approx(61.0)
    assert states["traffic-high"] == ("firing", pytest.approx(61.0))

    clock[0] = hour + timedelta(minutes=14)  # 49: under the threshold, over the clear one
    monitor.tick()
    assert _states(ctx)["traffic-high"] == ("firing", pytest.approx(49.0))
    clock[0] = hour + timedelta(minutes=20)  # 43: under the clear threshold
    monitor.tick()
    assert _states(ctx)["traffic-high"] == ("ok", pytest.approx(43.0))

    # The traffic really stopped: an hour and a half later the stretch holds 28/60 of the 3.
    clock[0] = hour + timedelta(hours=1, minutes=32)
    monitor.tick()
    assert _states(ctx)["traffic-low"] == ("firing", pytest.approx(1.4))
    assert _events(ctx) == [
        ("alert.firing", "traffic-high"),
        ("alert.resolved", "traffic-high"),
        ("alert.firing", "traffic-low"),
    ]
