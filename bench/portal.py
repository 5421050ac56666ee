"""Portal benchmark: server time of its pages with 100 deployments and 100,000 runs x 20
metrics in the store.

It fills a fresh home (a SQLite file, or with ``--postgres`` a fresh PostgreSQL database on
127.0.0.1:5432, created and dropped) in bulk through the store's tables: the runs, their 20
latest metrics (what the runs table filters and sorts on) and 3 params each, inserted in
batches of executemany; the 100 deployments as records (``store.deployments.create``, no
replica started) with their monitor windows of the current hour and day (counts and the
monitor's summary of them). Then it times, in-process through ``TestClient`` over
``loopml.portal.create_app``:
- ``/`` (the overview),
- the runs table: first page, sorted by a metric, filtered by a metric and a param and
  sorted, a deep page (90% into the runs) jumped to by its offset (``page=N``) and reached
  by the Next link of the page before it (a keyset cursor),
- the deployment page ``/projects/default/deployments/<name>`` (skipped with a note while the tree
  has no such page),
and the same runs pages with only 100 runs in the store, for the "100,000 as fast as 100"
ratio. Target: each page <= 150 ms p95.

Run: ``python bench/portal.py`` (``--runs 10000`` for a quick look, ``--postgres``).
"""

from __future__ import annotations

import argparse
import functools
import html
import random
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import insert

from loopml import projects
from loopml.core.clock import utcnow
from loopml.core.deployments import DeploymentSpec
from loopml.core.ids import new_id
from loopml.monitor.drift import DriftConfig
from loopml.monitor.windows import empty_state, summarize
from loopml.portal import create_app
from loopml.settings import Settings
from loopml.store import MetadataStore, deployments
from loopml.store import monitor as monitor_rows
from loopml.store._registry import project_row
from loopml.store.orm import ParamRow, RunRow
from loopml.train import tracking

TARGET_MS = 150.0
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BATCH = 2000
PAGES = {
    "runs: first page": "/runs?limit=50",
    "runs: sorted by a metric": "/runs?sort=metrics.m7&order=desc",
    "runs: filtered and sorted": "/runs?q=metrics.m3+>+0.5+and+params.p0+%3D+3"
    "&sort=metrics.m7&order=desc",
}


def fill_runs(store: MetadataStore, project: str, n_runs: int, n_metrics: int) -> None:
    """``n_runs`` FINISHED runs with ``n_metrics`` latest metrics and 3 params each, in bulk."""
    experiment = tracking.ensure_experiment(store, project, "bench", actor="bench")
    with store.session() as session:
        project_id = project_row(session, project).id
    rng = random.Random(7)
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
    """``n`` deployment records of ``churn/1`` (no replica is started)."""
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


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm the caches and the connection pool
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18]


@contextmanager
def database(postgres: bool, tmp: Path) -> Iterator[str]:
    """A fresh, empty database's URL; a PostgreSQL one is dropped afterwards."""
    if not postgres:
        yield f"sqlite:///{tmp / 'loopml.db'}"
        return
    import psycopg

    name = f"loopml_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_ADMIN.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fill(url: str, args: argparse.Namespace) -> None:
    """The store before the app starts (its background workers would wait on the bulk
    writes): ``default`` with ``--runs`` runs and the deployments, ``small`` with 100 runs."""
    store = MetadataStore(url)
    store.upgrade()
    projects.create(store, "small", actor="bench")
    started = time.perf_counter()
    fill_runs(store, "default", args.runs, args.metrics)
    fill_runs(store, "small", 100, args.metrics)
    fill_deployments(store, args.deployments)
    fill_windows(store, args.deployments)
    if store.dialect == "postgresql":
        # What autovacuum does after a bulk load, minutes later: the planner needs the
        # tables' statistics to pick the metric index over a scan.
        with store._engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
            connection.commit()  # its statistics are kept only once committed
    took = time.perf_counter() - started
    store.dispose()
    print(
        f"filled {args.runs:,} (+100) runs x {args.metrics} metrics and {args.deployments} "
        f"deployments (with their current hour and day windows) in {took:.1f} s"
    )


def pages(n_runs: int, n_deployments: int, project: str) -> dict[str, str]:
    """The pages timed, by label."""
    found = {"overview /": "/"} if project == "default" else {}
    found.update({label: f"{path}&project={project}" for label, path in PAGES.items()})
    deep = (n_runs * 9 // 10) // 50 * 50
    found["runs: jump to a deep page (offset)"] = f"/runs?cursor={deep}&project={project}"
    # The same page through the Next link of the page before it.
    before = f"cursor={deep - 50}" if deep > 50 else "limit=50"
    found["runs: deep page by Next (keyset)"] = f"/runs?{before}&project={project}"
    if n_deployments and project == "default":
        found["deployment page"] = f"/projects/default/deployments/dep-{n_deployments // 2:03d}"
    return found


def measure(
    http: TestClient, targets: dict[str, str], repeat: int, only: str = ""
) -> dict[str, list[float]]:
    """Each page's server times (of the pages whose label matches ``only``); a deployment
    page that 404s is left out with a note."""
    results: dict[str, list[float]] = {}
    for label, path in targets.items():
        if not re.search(only, label):
            continue
        answer = http.get(path)
        if answer.status_code == 404 and label == "deployment page":
            print(f"note: {path} answers 404 in this tree (no deployment page yet): skipped")
            continue
        if answer.status_code != 200:
            raise SystemExit(f"{path} answered {answer.status_code}: {answer.text[:300]}")
        if "by Next" in label:  # the deep page, as the Next link of the one before reads it
            found = re.search(r'rel="next" href="(/runs\?[^"]*)"', answer.text)
            if found is None:
                raise SystemExit(f"{path} has no Next link")
            path = html.unescape(found.group(1))
        results[label] = timed(functools.partial(http.get, path), repeat)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--postgres", action="store_true", help="a fresh PostgreSQL database")
    parser.add_argument(
        "--pages", default="", help="time only the pages whose label matches this regex"
    )
    args = parser.parse_args()
    backend = "PostgreSQL" if args.postgres else "SQLite"
    with tempfile.TemporaryDirectory() as tmp, database(args.postgres, Path(tmp)) as url:
        fill(url, args)
        settings = Settings(
            home=Path(tmp) / "home",
            database={"url": url},
            artifacts={"root": str(Path(tmp) / "artifacts")},
            auth={"enabled": False},
        )
        app = create_app(settings)
        with TestClient(app, base_url="http://127.0.0.1") as http:
            targets = pages(args.runs, args.deployments, "default")
            big = measure(http, targets, args.repeat, args.pages)
            small = measure(http, pages(100, 0, "small"), args.repeat, args.pages)
    print(f"\nserver time per page on {backend} (in-process TestClient, {args.repeat} requests)")
    print(
        f"{'page':<40} {f'{args.runs:,} runs p50':>16} {'p95':>8}   {'100 runs p50':>12} "
        f"{'p95':>8}   {'ratio p50':>9}   target p95"
    )
    for label, samples in big.items():
        few = small.get(label)
        line = f"{label:<40} {statistics.median(samples):13.1f} ms {p95(samples):5.1f} ms"
        if few:
            ratio = statistics.median(samples) / statistics.median(few)
            line += f"   {statistics.median(few):9.1f} ms {p95(few):5.1f} ms   {ratio:8.2f}x"
        else:
            line += " " * 38
        verdict = "ok" if p95(samples) <= TARGET_MS else "OVER"
        line += f"   {TARGET_MS:.0f} ms {verdict}"
        print(line)


if __name__ == "__main__":
    main()
