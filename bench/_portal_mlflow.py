"""The MLflow side of ``bench/portal.py`` (``--mlflow-python PATH``): the same number of runs
and metrics in ``mlflow server``, and the figures of what its UI's runs table asks for.

MLflow's store is filled by ``_mlflow_tracking.py populate`` (bulk inserts into its own
tables, run by the interpreter that has ``mlflow``: its pins differ from loopml's). Then
``mlflow server`` starts on a loopback port over it and this process times, over HTTP, the
call the experiment page's runs table makes for each of the portal's runs pages
(``POST /ajax-api/2.0/mlflow/runs/search``, 50 runs a page as the portal's table shows):
first page (newest first), sorted by a metric, filtered by a metric and a param and sorted,
and a deep page (90 % in, by MLflow's offset page token; the UI itself only pages forwards
with "Load more"). These are the server's answers alone, as the portal's server time is
its pages' (in-process there, over loopback here: a fraction of a millisecond more).

With Chromium, it also loads the experiment's runs table (``/#/experiments/<id>/runs``; the
experiment's own address opens MLflow 3's GenAI overview) in a fresh browser context and
waits for the newest run's name to appear in the table (at most ``BROWSER_TIMEOUT_S``):
MLflow's UI draws the page with JavaScript, so the load event says little; the run's name
on screen is what a user waits for.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from tracking import _free_port, _serving

POPULATE = Path(__file__).with_name("_mlflow_tracking.py")
BROWSER_TIMEOUT_S = 60.0
SEARCH_TIMEOUT_S = 120.0
PAGE = 50


def searches(experiment_id: str, n_runs: int) -> dict[str, dict[str, object]]:
    """The runs-search bodies, by the portal's page labels."""
    base: dict[str, object] = {
        "experiment_ids": [experiment_id],
        "max_results": PAGE,
        "run_view_type": "ACTIVE_ONLY",
    }
    deep = (n_runs * 9 // 10) // PAGE * PAGE
    token = base64.b64encode(json.dumps({"offset": deep}).encode()).decode()
    return {
        "runs: first page": {**base, "order_by": ["attributes.start_time DESC"]},
        "runs: filtered and sorted": {
            **base,
            "filter": "metrics.m3 > 0.5 and params.p0 = '3'",
            "order_by": ["metrics.m7 DESC"],
        },
        "runs: jump to a deep page (offset)": {
            **base,
            "order_by": ["attributes.start_time DESC"],
            "page_token": token,
        },
        # Last: on 100,000 runs it outlasts the timeout, and MLflow's worker goes on with
        # the abandoned query, which would load the machine under the searches after it.
        "runs: sorted by a metric": {**base, "order_by": ["metrics.m7 DESC"]},
    }


@contextmanager
def mlflow_server(python: str, n_runs: int, n_metrics: int) -> Iterator[tuple[str, str]]:
    """``mlflow server`` over a store filled with ``n_runs`` runs: its URL and the bench
    experiment's id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "MLFLOW_"))}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "mlflow.db"
        started = time.perf_counter()
        filled = subprocess.run(
            [python, str(POPULATE), "populate", str(db), str(n_runs), str(n_metrics)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        experiment_id = str(json.loads(filled.stdout.strip().splitlines()[-1])["experiment_id"])
        print(
            f"filled MLflow's store with {n_runs:,} runs x {n_metrics} metrics in "
            f"{time.perf_counter() - started:.1f} s"
        )
        url = f"http://127.0.0.1:{_free_port()}"
        command = [
            python,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            url.rsplit(":", 1)[1],
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            str(Path(tmp) / "artifacts"),
        ]
        with _serving(command, f"{url}/health", env, Path(tmp) / "mlflow.log"):
            yield url, experiment_id


def server_times(
    url: str, experiment_id: str, n_runs: int, repeat: int
) -> dict[str, list[float] | None]:
    """Each runs-table search's time in ms, ``repeat`` times after one warm-up; ``None`` for
    a search with no answer in ``SEARCH_TIMEOUT_S`` (the UI would still be waiting). A
    search that answers other than 50 runs stops the bench: the figures would not compare."""
    results: dict[str, list[float] | None] = {}
    with httpx.Client(base_url=url, timeout=SEARCH_TIMEOUT_S) as http:
        for label, body in searches(experiment_id, n_runs).items():
            started = time.perf_counter()
            try:
                answer = http.post("/ajax-api/2.0/mlflow/runs/search", json=body)
            except httpx.TimeoutException:
                print(f"MLflow: {label}: no answer in {SEARCH_TIMEOUT_S:.0f} s")
                results[label] = None
                continue
            answer.raise_for_status()
            first = (time.perf_counter() - started) * 1000
            found = len(answer.json().get("runs", []))
            if found != PAGE:
                raise SystemExit(f"MLflow's {label!r} search answered {found} runs, not {PAGE}")
            print(f"MLflow: {label}: first answer in {first:.0f} ms")
            samples = []
            for _ in range(repeat):
                started = time.perf_counter()
                http.post("/ajax-api/2.0/mlflow/runs/search", json=body).raise_for_status()
                samples.append((time.perf_counter() - started) * 1000)
            results[label] = samples
    return results


def browser_times(
    url: str, experiment_id: str, n_runs: int, chromium: str, repeat: int
) -> list[float | None]:
    """The experiment page's time to the newest run's name on screen, in ms, each in a fresh
    browser context after one warm-up load; ``None`` for a load that did not get there in
    ``BROWSER_TIMEOUT_S``."""
    from playwright.sync_api import Error, sync_playwright

    newest = f"run-{n_runs - 1}"
    found: list[float | None] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        for _ in range(repeat + 1):
            context = browser.new_context()
            page = context.new_page()
            started = time.perf_counter()
            try:
                page.goto(f"{url}/#/experiments/{experiment_id}/runs")
                page.get_by_text(newest, exact=True).first.wait_for(
                    timeout=BROWSER_TIMEOUT_S * 1000
                )
                found.append((time.perf_counter() - started) * 1000)
            except Error:
                found.append(None)
            context.close()
        browser.close()
    return found[1:]
