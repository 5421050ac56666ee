"""Usage counts: failed requests read from the gateway's real counters into the window of
the round that saw them, latency percentiles, and retention of old windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from loopml.faces.context import AppContext
from loopml.monitor.engine import Monitor
from loopml.monitor.usage import empty_usage, usage_summary
from loopml.platform.monitoring import gateway_errors
from loopml.serve.gateway.metrics import GatewayMetrics
from loopml.store import monitor as rows
from tests.waiting import eventually

KEY = ("default", "churn-api")


def test_failed_requests_land_in_the_window_of_the_round_that_saw_them(
    store_ctx: AppContext,
) -> None:
    metrics = GatewayMetrics(list)
    metrics.observe(KEY, "churn", "1", "1", 200, 0.01, None)
    metrics.observe(KEY, "churn", "1", "1", 503, 0.01, "unavailable")
    now = datetime.now(UTC)
    monitor = Monitor(
        store_ctx.store,
        store_ctx.artifacts,
        store_ctx.settings.monitor,
        clock=lambda: now,
        errors=lambda: gateway_errors(metrics),
    )
    monitor.tick()  # the first round counts from zero, where the gateway's counters started
    for _ in range(3):
        metrics.observe(KEY, "churn", "1", "1", 503, 0.01, "unavailable")
    metrics.observe(KEY, "", "", "", 504, 5.0, "timeout")
    monitor.tick()
    with store_ctx.store.session() as session:
        found = rows.list_windows(session, "default", "churn-api", size="1h")
    by_version = {(w["model"], w["version"]): w["summary"]["usage"] for w in found}
    assert by_version[("churn", 1)]["errors_by_status"] == {"503": 4}
    assert by_version[("", 0)]["errors_by_status"] == {"504": 1}  # no replica answered
    assert by_version[("churn", 1)]["error_rate"] == 1.0
    monitor.tick()  # nothing new: nothing counted twice
    with store_ctx.store.session() as session:
        again = rows.list_windows(session, "default", "churn-api", size="1h")
    assert {(w["model"], w["version"]): w["summary"]["usage"]["errors"] for w in again} == {
        ("churn", 1): 4,
        ("", 0): 1,
    }


def test_latency_percentiles_from_the_histogram_are_close() -> None:
    from loopml.monitor.usage import LATENCY_EDGES_MS

    latency = np.random.default_rng(0).lognormal(1.0, 0.8, 20_000)
    usage = empty_usage()
    usage["requests"] = usage["rows"] = latency.size
    where = np.searchsorted(LATENCY_EDGES_MS, latency, side="right")
    usage["latency"] = np.bincount(where, minlength=LATENCY_EDGES_MS.size + 1).tolist()
    summary = usage_summary(usage, 60.0)
    for q, name in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms"), (0.99, "latency_p99_ms")):
        assert abs(summary[name] / np.quantile(latency, q) - 1) < 0.12


def test_windows_past_retention_are_dropped(store_ctx: AppContext) -> None:
    old = datetime.now(UTC) - timedelta(days=200)
    with store_ctx.store.session() as session:
        key = ("churn-api", "churn", 1, "1h", old)
        rows.put_window(
            session,
            "default",
            key,
            {"end": old + timedelta(hours=1), "rows": 1, "labels": 0, "state": {}, "summary": {}},
        )
    Monitor(store_ctx.store, store_ctx.artifacts, store_ctx.settings.monitor).tick()
    with store_ctx.store.session() as session:
        assert rows.list_windows(session, "default", "churn-api", size="1h") == []


def test_the_monitor_thread_runs_rounds_until_stopped(store_ctx: AppContext) -> None:

    from loopml.monitor.engine import MonitorThread

    settings = store_ctx.settings.monitor.model_copy(update={"interval_s": 0.05})
    monitor = Monitor(store_ctx.store, store_ctx.artifacts, settings)
    thread = MonitorThread(monitor).start()
    try:
        # A round looked at the deployment.
        eventually(lambda: KEY in monitor.latest, 20, f"a monitor round to look at {KEY}")
    finally:
        thread.stop()


def test_a_window_keeps_the_busiest_callers_and_folds_the_rest_into_other() -> None:
    from loopml.monitor.usage import MAX_CALLERS, merge_usage

    a, b = empty_usage(), empty_usage()
    a["callers"] = {f"user:a{i:03}": i + 1 for i in range(80)}
    b["callers"] = {f"user:b{i:03}": 1000 + i for i in range(80)}
    merged = merge_usage(a, b)
    callers = merged["callers"]
    assert len(callers) == MAX_CALLERS
    assert sum(callers.values()) == sum(a["callers"].values()) + sum(b["callers"].values())
    assert all(name in callers for name in b["callers"])  # the busiest are kept by name
    top = usage_summary(merged, 3600.0)["callers"]
    assert list(top)[:2] == ["user:b079", "user:b078"]
    assert len(top) == 11
    assert sum(top.values()) == sum(callers.values())
