"""Requests that failed before the monitor's first round are counted (issue 55, item 0): a
gateway's counters start at zero with its process, and so does the monitor's reading of
them, so a 422 sent right after start (it never reaches the prediction log) lands in a
window instead of being taken as the first round's baseline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.faces.context import AppContext
from loopml.monitor.engine import Monitor
from loopml.platform.monitoring import gateway_callers, gateway_errors
from loopml.predictions import reader
from tests.unit.monitor.test_callers import BODY, platform
from tests.waiting import eventually

INVALID = {"instances": [{"no such column": "x"}]}


def _started_monitor(http: TestClient) -> Monitor:
    """The monitor as the platform starts one (``platform.monitoring.start_monitor``): over
    the gateway's own counters, made when they are still at zero."""
    ctx: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
    metrics = http.app.state.running.serving.gateway.metrics  # type: ignore[attr-defined]
    return Monitor(
        ctx.store,
        ctx.artifacts,
        ctx.settings.monitor,
        errors=lambda: gateway_errors(metrics),
        callers=lambda: gateway_callers(metrics),
    )


def _logged(http: TestClient) -> int:
    ctx: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
    later = datetime.now(UTC) + timedelta(hours=1)
    found = reader.predictions_between(
        ctx.store, ctx.artifacts, "default", "churn", datetime(2000, 1, 1, tzinfo=UTC), later
    )
    return sum(table.num_rows for table in found)


def test_failures_sent_before_the_first_round_are_counted(
    tmp_path: Path, migrated_database_url: str
) -> None:
    with platform(tmp_path, migrated_database_url, auth=False) as http:
        monitor = _started_monitor(http)
        sdk = Client(http=TestClient(http.app, base_url="http://127.0.0.1"))
        sdk.deployments.create("churn", "cancer/1")
        sdk.deployments.wait("churn", timeout_s=60)
        # Right after start, before the monitor's first round: 5 invalid bodies, 20 good.
        for _ in range(5):
            refused = http.post("/deployments/churn/predict", json=INVALID)
            assert refused.status_code == 422, refused.text
        for _ in range(20):
            answer = http.post("/deployments/churn/predict", json=BODY)
            assert answer.status_code == 200, answer.text

        # The test's monitor reads up to now (lag_s 0): it starts once the log holds them.
        eventually(lambda: _logged(http) == 20, 60, "the prediction log to hold 20 rows")
        seen: list[dict[str, Any]] = [{}]

        def counted() -> dict[str, Any] | None:
            monitor.tick()  # the first round (and more, were the view not there yet)
            window = sdk.monitoring.view("churn")["now"]["window"]
            seen[0] = window["summary"]["usage"] if window else {}
            return seen[0] if seen[0].get("requests") == 25 else None

        used = eventually(
            counted,
            60,
            "the monitor to count 25 requests (20 answered, 5 failed)",
            interval_s=0.5,
            describe=lambda: f"usage now: {seen[0]}",
        )
        assert used["errors"] == 5
        assert used["errors_by_status"] == {"422": 5}
        assert used["callers"] == {"anonymous": 25}
        # Counted once: another round adds nothing.
        monitor.tick()
        again = sdk.monitoring.view("churn")["now"]["window"]["summary"]["usage"]
        assert (again["requests"], again["errors"]) == (25, 5)
        sdk.deployments.delete("churn")
