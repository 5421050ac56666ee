"""The portal at scale: a store filled in bulk (many runs with their latest metrics and
params, deployment records, and those deployments' monitor windows, written straight
through the store's tables in batches of ``executemany``, before any server starts on it),
and a page's first-load figures as Chromium's Navigation Timing gives them.

Used by ``bench/portal.py`` (100,000 runs x 20 metrics, 100 deployments) and the browser
tests (``tests/e2e/test_portal_browser_scale.py``: the runs page at 100,000 runs)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert

from loopml.core.clock import utcnow
from loopml.core.deployments import DeploymentSpec
from loopml.core.ids import new_id
from loopml.monitor.drift import DriftConfig
from loopml.monitor.windows import empty_state, summarize
from loopml.store import MetadataStore, deployments
from loopml.store import monitor as monitor_rows
from loopml.store.orm import ParamRow, RunRow
from loopml.store.project_lookup import project_row
from loopml.train import tracking

if TYPE_CHECKING:
    from playwright.sync_api import Page

BATCH = 2000
JS_BUDGET_BYTES = 300 * 1024
LOAD_BUDGET_MS = 1000.0

_LOAD_FIGURES = """() => {
    const nav = performance.getEntriesByType("navigation")[0];
    const resources = performance.getEntriesByType("resource");
    const scripts = resources.filter(r => r.initiatorType === "script");
    return {
        load_ms: nav.loadEventEnd - nav.startTime,
        response_ms: nav.responseEnd - nav.startTime,
        html_bytes: nav.decodedBodySize,
        js_bytes: scripts.reduce((n, r) => n + r.decodedBodySize, 0),
        requests: resources.length + 1,
    };
}"""


def load_figures(page: Page) -> dict[str, float]:
    """The page's Navigation Timing once its load event ended: ``load_ms`` (navigation start
    to the end of the load event), ``response_ms`` (to the HTML's last byte), ``html_bytes``,
    ``js_bytes`` (every script's decoded size) and ``requests`` (the page and what it loaded)."""
    page.wait_for_load_state("load")
    page.wait_for_function("() => performance.getEntriesByType('navigation')[0].loadEventEnd > 0")
    figures: dict[str, float] = page.evaluate(_LOAD_FIGURES)
    return figures


def fill_runs(
    store: MetadataStore, project: str, n_runs: int, n_metrics: int, *, seed: int = 7
) -> None:
    """``n_runs`` FINISHED runs named ``run-000000`` on, one a second over the last 30 days
    (so newest first is the highest number), with ``n_metrics`` latest metrics ``m0``... (a
    uniform random value each) and 3 params ``p0``..``p2`` (0 to 9) each, in bulk."""
    experiment = tracking.ensure_experiment(store, project, "bench", actor="bench")
    with store.session() as session:
        project_id = project_row(session, project).id
    rng = random.Random(seed)
    start = utcnow() - timedelta(days=30)
    for first in range(0, n_runs, BATCH):
        runs: list[dict[str, Any]] = []
        metrics: list[tuple[str, str, float, bool, int, int]] = []
        params: list[dict[str, Any]] = []
        for i in range(first, min(first + BATCH, n_runs)):
            run_id = new_id()
            began = start + timedelta(seconds=i)
            runs.append(
                {
                    "id": run_id,
                    "created_at": began,
                    "updated_at": began,
                    "project_id": project_id,
                    "experiment_id": experiment.id,
                    "name": f"run-{i:06d}",
                    "status": "FINISHED",
                    "start_time": began,
                    "end_time": began + timedelta(seconds=30),
                    "heartbeat_at": began,
                    "heartbeat_timeout_s": 60,
                    "code_version": {},
                    "actor": "bench",
                }
            )
            metrics += [(run_id, f"m{j}", rng.random(), False, 100, i) for j in range(n_metrics)]
            params += [
                {"run_id": run_id, "key": f"p{j}", "value": str(rng.randint(0, 9))}
                for j in range(3)
            ]
        with store.session() as session:
            session.execute(insert(RunRow), runs)
            # 2,000,000 rows: straight to the driver's executemany, past per-row processing.
            mark = "?" if session.get_bind().dialect.name == "sqlite" else "%s"
            session.connection().exec_driver_sql(
                f"INSERT INTO latest_metrics (run_id, key, value, is_nan, step, timestamp_ms) "
                f"VALUES ({', '.join([mark] * 6)})",
                metrics,
            )
            session.execute(insert(ParamRow), params)


def fill_deployments(store: MetadataStore, n: int) -> None:
    """``n`` deployment records ``dep-000``... of ``churn/1`` in ``default`` (no replica is
    started)."""
    spec = DeploymentSpec(model="churn/1", min_replicas=0)
    revision = deployments.NewRevision(
        number=1, model="churn", version=1, ref="churn/1", role="primary"
    )
    with store.session() as session:
        for i in range(n):
            deployments.create(
                session,
                "default",
                f"dep-{i:03d}",
                spec=spec,
                revisions=[revision],
                roles=deployments.Roles(primary=1),
                traffic={1: 100},
                actor="bench",
            )


def fill_windows(store: MetadataStore, n: int, features: int = 10) -> None:
    """Each of the ``n`` deployments' monitor windows of the current hour and day: counts
    as the monitor keeps them (requests, errors and latencies, and 21 bins of each of
    ``features`` numeric features) and the summary the monitor computes from them
    (``summarize``; no reference, so drift is off), so that the pages read what
    deployments in use give them."""
    now = utcnow()
    for size, seconds in (("1h", 3600), ("1d", 86_400)):
        start = datetime.fromtimestamp(now.timestamp() // seconds * seconds, UTC)
        rng = random.Random(seconds)
        with store.session() as session:
            for i in range(n):
                state = empty_state()
                requests = rng.randint(100, 10_000)
                state["usage"].update(requests=requests, rows=requests)
                state["usage"]["errors"] = {"500": requests // 100}
                state["usage"]["latency"][3] = requests
                state["features"] = {
                    f"f{j}": {"kind": "numeric", "counts": [rng.randint(0, 99) for _ in range(21)]}
                    for j in range(features)
                }
                window = {
                    "end": start + timedelta(seconds=seconds),
                    "rows": requests,
                    "labels": 0,
                    "state": state,
                    "summary": summarize(state, None, seconds, DriftConfig()),
                }
                key = (f"dep-{i:03d}", "churn", 1, size, start)
                monitor_rows.put_window(session, "default", key, window)
