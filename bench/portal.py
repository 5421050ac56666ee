"""Portal benchmark: server time of its pages with 100 deployments and 100,000 runs x 20
metrics in the store.

It fills a fresh home (a SQLite file, or with ``--postgres`` a fresh PostgreSQL database on
127.0.0.1:5432, created and dropped) in bulk through the store's tables: the runs, their 20
latest metrics (what the runs table filters and sorts on) and 3 params each, inserted in
batches of executemany; the 100 deployments as records (``store.deployments.create``, no
replica started) with their monitor windows of the current hour and day (counts and the
monitor's summary of them). Then it times, in-process through ``TestClient`` over
``loopml.platform.create_app``:
- ``/`` (the overview),
- the runs table: first page, sorted by a metric, filtered by a metric and a param and
  sorted, a deep page (90% into the runs) jumped to by its offset (``page=N``) and reached
  by the Next link of the page before it (a keyset cursor),
- the deployment page ``/projects/default/deployments/<name>`` (skipped with a note while the tree
  has no such page),
and the same runs pages with only 100 runs in the store, for the "100,000 as fast as 100"
ratio. Target: each page <= 150 ms p95.

Then it starts ``loopml up`` on a loopback port over the same database and loads the
overview, the runs table's first page and the deployment page in Chromium (Debian's, through
Playwright; ``--chromium PATH``), each ``--browser-repeat`` times in a fresh browser context
(empty cache) after one warm-up load, and prints Navigation Timing's figures: the time from
navigation start to the end of the load event, and the bytes of JavaScript the page loaded.
Target: <= 1 s and <= 300 KB of JavaScript. Skipped with a note when Chromium or
Playwright is missing (or with ``--no-browser``).

The fill is ``tests/portal_scale.py``'s, which the browser test of the runs page at
100,000 runs uses too.

With ``--mlflow-python PATH`` (an interpreter with ``mlflow`` in its own venv:
``python3 -m venv /tmp/mlflow-server && /tmp/mlflow-server/bin/pip install mlflow==3.17.2``)
the same number of runs and metrics go into ``mlflow server``, and its UI's runs-table
searches and the experiment page in Chromium are timed beside the portal's
(``bench/_portal_mlflow.py`` says what exactly).

Run: ``python bench/portal.py`` (``--runs 10000`` for a quick look, ``--postgres``).
"""

from __future__ import annotations

import argparse
import functools
import html
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from loopml import projects
from loopml.platform import create_app
from loopml.settings import Settings
from loopml.store import MetadataStore

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]
from tests.portal_scale import (  # noqa: E402
    JS_BUDGET_BYTES,
    LOAD_BUDGET_MS,
    fill_deployments,
    fill_runs,
    fill_windows,
    load_figures,
)

TARGET_MS = 150.0
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BROWSER_PAGES = ("overview /", "runs: first page", "deployment page")
"""The pages loaded in Chromium (labels of ``pages``)."""
PAGES = {
    "runs: first page": "/runs?limit=50",
    "runs: sorted by a metric": "/runs?sort=metrics.m7&order=desc",
    "runs: filtered and sorted": "/runs?q=metrics.m3+>+0.5+and+params.p0+%3D+3"
    "&sort=metrics.m7&order=desc",
}


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served(url: str, tmp: Path) -> Iterator[str]:
    """``loopml up`` on a free loopback port over the filled database; its base URL."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env.update(
        LOOPML_HOME=str(tmp / "home-up"),
        LOOPML_DATABASE_URL=url,
        LOOPML_ARTIFACTS_ROOT=str(tmp / "artifacts"),
        LOOPML_AUTH_ENABLED="false",
        OMP_WAIT_POLICY="passive",
    )
    command = [sys.executable, "-m", "loopml.cli.main", "up", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while server.poll() is None:
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("loopml up did not become ready in 120 s")
            time.sleep(0.2)
        else:
            raise SystemExit(f"loopml up exited with {server.returncode}")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def browser_loads(
    base: str, targets: dict[str, str], chromium: str, repeat: int
) -> dict[str, list[dict[str, float]]]:
    """Each page's first load in Chromium, ``repeat`` times, each in a fresh browser context
    (an empty cache: every script and style fetched again), as Navigation Timing gives it."""
    from playwright.sync_api import sync_playwright

    results: dict[str, list[dict[str, float]]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        for label, path in targets.items():
            results[label] = []
            for _ in range(repeat + 1):  # the first one warms the server's caches
                context = browser.new_context()
                page = context.new_page()
                answer = page.goto(base + path)
                if answer is None or answer.status != 200:
                    raise SystemExit(f"{path} answered {answer and answer.status} in Chromium")
                results[label].append(load_figures(page))
                context.close()
            results[label] = results[label][1:]
        browser.close()
    return results


def print_browser(results: dict[str, list[dict[str, float]]], backend: str, repeat: int) -> None:
    print(
        f"\nfirst page load in Chromium on {backend} (loopml up on loopback, a fresh browser "
        f"context each time, {repeat} loads; Navigation Timing: start to the end of the load "
        "event)"
    )
    print(
        f"{'page':<40} {'load p50':>9} {'max':>8} {'HTML in':>9} {'HTML':>9} {'JS':>9} "
        f"{'requests':>8}   target"
    )
    for label, loads in results.items():
        load = [f["load_ms"] for f in loads]
        js = max(f["js_bytes"] for f in loads)
        ok = max(load) <= LOAD_BUDGET_MS and js <= JS_BUDGET_BYTES
        print(
            f"{label:<40} {statistics.median(load):6.0f} ms {max(load):5.0f} ms "
            f"{statistics.median(f['response_ms'] for f in loads):6.0f} ms "
            f"{loads[0]['html_bytes'] / 1024:6.1f} KB {js / 1024:6.1f} KB "
            f"{int(loads[0]['requests']):>8}   {LOAD_BUDGET_MS / 1000:.0f} s, "
            f"{JS_BUDGET_BYTES // 1024} KB JS {'ok' if ok else 'OVER'}"
        )


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
    parser.add_argument(
        "--chromium",
        default=os.environ.get("LOOPML_TEST_CHROMIUM", "/usr/bin/chromium"),
        help="the Chromium for the first-page-load figures",
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="skip the first page loads in Chromium"
    )
    parser.add_argument("--browser-repeat", type=int, default=5)
    parser.add_argument(
        "--mlflow-python",
        help="an interpreter with mlflow (its own venv): the same runs in MLflow's UI",
    )
    parser.add_argument(
        "--mlflow-repeat",
        type=int,
        default=5,
        help="requests per MLflow search (each can take seconds at 100,000 runs)",
    )
    args = parser.parse_args()
    backend = "PostgreSQL" if args.postgres else "SQLite"
    chromium = None if args.no_browser else browser_ready(args.chromium)
    loads: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, database(args.postgres, Path(tmp)) as url:
        fill(url, args)
        settings = Settings(
            home=Path(tmp) / "home",
            database={"url": url},
            artifacts={"root": str(Path(tmp) / "artifacts")},
            auth={"enabled": False},
        )
        app = create_app(settings)
        targets = pages(args.runs, args.deployments, "default")
        with TestClient(app, base_url="http://127.0.0.1") as http:
            big = measure(http, targets, args.repeat, args.pages)
            small = measure(http, pages(100, 0, "small"), args.repeat, args.pages)
        if chromium:
            first = {k: v for k, v in targets.items() if k in BROWSER_PAGES}
            with served(url, Path(tmp)) as base:
                loads = browser_loads(base, first, chromium, args.browser_repeat)
    print_server(big, small, backend, args)
    if loads:
        print_browser(loads, backend, args.browser_repeat)
    if args.mlflow_python:
        compare_mlflow(args, big, loads, chromium)


def compare_mlflow(
    args: argparse.Namespace,
    big: dict[str, list[float]],
    loads: dict[str, list[dict[str, float]]],
    chromium: str | None,
) -> None:
    """The same runs in MLflow's server and UI, beside the portal's figures of this run."""
    from _portal_mlflow import browser_times, mlflow_server, server_times

    with mlflow_server(args.mlflow_python, args.runs, args.metrics) as (url, experiment):
        # The page loads first: a search MLflow does not finish in time goes on in its
        # worker, and would load the machine under what came after it.
        shown = (
            browser_times(url, experiment, args.runs, chromium, args.browser_repeat)
            if chromium
            else []
        )
        theirs = server_times(url, experiment, args.runs, args.mlflow_repeat)
    print(
        f"\nthe same {args.runs:,} runs x {args.metrics} metrics: the portal's runs pages "
        "(server time, HTML) against the runs search MLflow's UI makes for them (JSON, over "
        "loopback), p50 (p95)"
    )
    print(f"{'page':<40} {'loopml':>18} {'MLflow server':>20} {'loopml faster':>14}")
    for label, samples in theirs.items():
        mine = big.get(label)
        if not mine:
            continue
        if samples is None:
            print(
                f"{label:<40} {statistics.median(mine):8.1f} ({p95(mine):6.1f}) ms "
                f"{'no answer in 120 s':>20}"
            )
            continue
        ratio = statistics.median(samples) / statistics.median(mine)
        tail = p95(samples) if len(samples) >= 2 else max(samples)
        print(
            f"{label:<40} {statistics.median(mine):8.1f} ({p95(mine):6.1f}) ms "
            f"{statistics.median(samples):9.1f} ({tail:7.1f}) ms {ratio:13.1f}x"
        )
    if shown:
        loaded = [s for s in shown if s is not None]
        failed = len(shown) - len(loaded)
        theirs_text = (
            f"{statistics.median(loaded):.0f} ms p50, max {max(loaded):.0f} ms"
            if loaded
            else "never"
        )
        if failed:
            theirs_text += f"; {failed} of {len(shown)} loads not there in 60 s"
        mine_loads = [f["load_ms"] for f in loads.get("runs: first page", [])]
        mine_text = f"{statistics.median(mine_loads):.0f} ms p50" if mine_loads else "not run"
        print(
            f"first load of the runs table in Chromium: loopml {mine_text} (load event); "
            f"MLflow's experiment page {theirs_text} (to the newest run's name on screen)"
        )


def browser_ready(chromium: str) -> str | None:
    """``chromium`` when it and Playwright for Python are there; else None, with a note."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        print("note: no Playwright for Python (pip install -e '.[dev]'): no browser figures")
        return None
    if not os.access(chromium, os.X_OK):
        print(f"note: no Chromium at {chromium} (--chromium PATH): no browser figures")
        return None
    return chromium


def print_server(
    big: dict[str, list[float]],
    small: dict[str, list[float]],
    backend: str,
    args: argparse.Namespace,
) -> None:
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
