"""One monitor per database: monitors sharing a database take turns by a lease in the
metadata store, so each prediction row is counted once (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest

from loopml.faces.context import AppContext
from loopml.monitor.engine import Monitor
from loopml.monitor.lease import Lease, LeaseLost
from loopml.settings import MonitorSettings
from loopml.store import monitor as rows
from tests.unit.monitor.test_engine import _log_rows


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _settings(ctx: AppContext) -> MonitorSettings:
    # interval 30 s: a lease lasts 90 s.
    update = {"lag_s": 0, "default_rules": [], "interval_s": 30.0}
    return ctx.settings.monitor.model_copy(update=update)


def _monitor(ctx: AppContext, clock: Clock) -> Monitor:
    return Monitor(ctx.store, ctx.artifacts, _settings(ctx), clock=clock)


def _counted(ctx: AppContext) -> int:
    with ctx.store.session() as session:
        found = rows.list_windows(session, "default", "churn-api", size="1h")
    return sum(w["rows"] for w in found)


def _lease(ctx: AppContext) -> dict[str, object]:
    with ctx.store.session() as session:
        return rows.get_cursor(session, "default", "", rows.LEASE_KEY)


def test_two_monitors_ticking_alternately_count_each_row_once(store_ctx: AppContext) -> None:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    first, second = _monitor(store_ctx, clock), _monitor(store_ctx, clock)
    _log_rows(store_ctx, "churn-api", [clock.now - timedelta(minutes=5)] * 3)
    ran = first.tick()
    assert (ran.skipped, ran.rows) == (False, 3)
    skipped = second.tick()
    assert (skipped.skipped, skipped.rows, skipped.deployments) == (True, 0, 0)
    for _ in range(3):
        stamp = clock.now
        clock.now += timedelta(seconds=10)
        _log_rows(store_ctx, "churn-api", [stamp + timedelta(seconds=5)] * 2)
        assert second.tick().skipped
        assert first.tick().rows == 2
    assert _counted(store_ctx) == 3 + 3 * 2
    assert _lease(store_ctx)["id"] == first.lease.id


def test_the_second_takes_over_when_the_first_lease_expires(
    store_ctx: AppContext, caplog: pytest.LogCaptureFixture
) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    clock_a, clock_b = Clock(start), Clock(start + timedelta(seconds=60))
    first, second = _monitor(store_ctx, clock_a), _monitor(store_ctx, clock_b)
    assert not first.tick().skipped  # holds the lease until start + 90 s, then dies
    assert second.tick().skipped
    _log_rows(store_ctx, "churn-api", [start + timedelta(seconds=70)] * 4)
    clock_b.now = start + timedelta(seconds=91)
    with caplog.at_level(logging.INFO, logger="loopml.monitor"):
        taken = second.tick()
    assert (taken.skipped, taken.rows) == (False, 4)
    assert "now runs the monitor" in caplog.text
    assert _lease(store_ctx)["id"] == second.lease.id
    # The first comes back: the lease is the second's now, and it writes nothing.
    clock_a.now = clock_b.now
    assert first.tick().skipped
    with store_ctx.store.session() as session, pytest.raises(LeaseLost):
        first.lease.check(session)  # what fences a round it might have had in progress
    assert _counted(store_ctx) == 4


def test_a_stopped_monitor_releases_the_lease(store_ctx: AppContext) -> None:
    clock = Clock(datetime.now(UTC))
    first, second = _monitor(store_ctx, clock), _monitor(store_ctx, clock)
    assert not first.tick().skipped
    second.stop()  # not the holder: releases nothing
    assert second.tick().skipped
    first.stop()
    assert _lease(store_ctx) == {}
    assert not second.tick().skipped  # at once, not after the lease's 90 s


def test_of_monitors_taking_the_lease_at_once_exactly_one_holds_it(
    store_ctx: AppContext,
) -> None:
    now = datetime.now(UTC)
    leases = [Lease(store_ctx.store, 90.0) for _ in range(6)]
    start = threading.Barrier(len(leases))
    taken: list[bool] = []

    def take(lease: Lease) -> None:
        start.wait()
        taken.append(lease.take(now))

    threads = [threading.Thread(target=take, args=(lease,)) for lease in leases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(taken) == [False] * 5 + [True]
    [holder] = [lease for lease in leases if lease.held]
    assert _lease(store_ctx)["id"] == holder.id
