"""Counts from every server on one database: a monitor without the lease leaves its gateway's
failed requests and callers and its replicas' samples for the holder, which adds them to
its windows once (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from loopml.core.resources import ReplicaSample
from loopml.faces.context import AppContext
from loopml.monitor.engine import Monitor
from loopml.platform.monitoring import gateway_callers, gateway_errors
from loopml.serve.gateway.metrics import GatewayMetrics
from loopml.store import monitor as rows
from tests.unit.monitor.test_lease import Clock, _settings
from tests.unit.monitor.test_resources import _sample

KEY = ("default", "churn-api")


def _server(ctx: AppContext, clock: Clock, samples: list[ReplicaSample]) -> tuple[Monitor, Any]:
    """A server's monitor over its own gateway counters and replicas."""
    metrics = GatewayMetrics(list)
    monitor = Monitor(
        ctx.store,
        ctx.artifacts,
        _settings(ctx),
        clock=clock,
        errors=lambda: gateway_errors(metrics),
        callers=lambda: gateway_callers(metrics),
        resources=lambda: list(samples),
    )
    return monitor, metrics


def _usage(ctx: AppContext) -> dict[str, Any]:
    with ctx.store.session() as session:
        [window] = rows.list_windows(session, "default", "churn-api", size="1h")
    return dict(window["summary"])


def _shares_left(ctx: AppContext) -> int:
    with ctx.store.session() as session:
        return len(rows.take_shares(session))


def test_the_holder_adds_what_the_other_servers_counted_once(store_ctx: AppContext) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    clock = Clock(hour - timedelta(minutes=30))  # every round in one hour
    holder, here = _server(store_ctx, clock, [_sample(20, 100)])
    other, there = _server(store_ctx, clock, [_sample(60, 300, replica=1)])
    assert not holder.tick().skipped
    assert other.tick().skipped  # nothing counted yet: nothing to leave
    for _ in range(2):
        here.observe(KEY, "churn", "1", "1", 503, 0.01, "unavailable", "user:ada")
    for _ in range(3):
        there.observe(KEY, "churn", "1", "1", 500, 0.01, "internal", "user:bob")
    there.observe(KEY, "churn", "1", "1", 200, 0.01, None, "user:bob")
    clock.now += timedelta(seconds=10)
    assert other.tick().skipped  # left in the database for the holder
    holder.tick()
    summary = _usage(store_ctx)
    used = summary["usage"]
    assert used["errors_by_status"] == {"503": 2, "500": 3}
    assert used["callers"] == {"user:bob": 4, "user:ada": 2}
    replicas = {r["replica"]: r for r in summary["resources"]["replicas"]}
    assert sorted(replicas) == ["r1/0", "r1/1"]  # this server's replica and the other's
    assert replicas["r1/1"]["cpu_max"] == 60.0
    assert _shares_left(store_ctx) == 0

    # Taken once: the next rounds add nothing new.
    clock.now += timedelta(seconds=10)
    other.tick()
    holder.tick()
    again = _usage(store_ctx)["usage"]
    assert again["errors_by_status"] == {"503": 2, "500": 3}
    assert again["callers"] == {"user:bob": 4, "user:ada": 2}
