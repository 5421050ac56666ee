"""Tracking benchmark on the embedded SQLite store.

10,000 runs with 20 latest metrics, 5 params and 2 tags each; then
- the time to log one 1,000-metric batch (``tracking.log_batch``, one transaction), and
- a search with a metric filter, a metric sort and one page (100 runs, with their params,
  latest metrics and tags) over the 10,000 runs (``tracking.search_runs``, one query).

Targets on SQLite: search p50 <= 50 ms, batch p50 <= 30 ms. Run: ``python bench/tracking.py``.

With ``--mlflow-python PATH`` (an interpreter with the full ``mlflow`` package in its own
venv: ``python3 -m venv /tmp/mlflow-server && /tmp/mlflow-server/bin/pip install
mlflow==3.17.2``), it then compares servers on the same data, through the ``mlflow`` client
of that interpreter: ``loopml up`` (its MLflow API) against ``mlflow server``, both on a
SQLite file; ``search_runs`` with the same filter and order (100 runs) and ``log_batch`` of
1,000 metrics. Targets: loopml >= 5x faster on search, >= 2x on log_batch (p50). Both
stores also hold ``--models`` registered models (1,000) of 3 versions each, made from the
runs, and the registry's searches are timed the same way: ``search_registered_models`` (a
``name LIKE`` filter, and the first page with none) and ``search_model_versions`` (by
model name, and by run id); they have no target, the ratio is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from loopml.core.run_search import RunFilter, RunOrder, RunSearch
from loopml.core.runs import LogBatch, MetricPoint
from loopml.store import (
    MetadataStore,
    lineage,
    logged_models,
    model_versions,
    models,
    run_logs,
    runs,
)
from loopml.train import tracking

TARGET_SEARCH_MS = 50.0
TARGET_BATCH_MS = 30.0
TARGET_SEARCH_RATIO = 5.0
TARGET_BATCH_RATIO = 2.0
MLFLOW_SCRIPT = Path(__file__).with_name("_mlflow_tracking.py")


def populate(store: MetadataStore, n_runs: int, n_metrics: int) -> list[str]:
    tracking.ensure_experiment(store, "default", "bench", actor="bench")
    rng = random.Random(7)
    ids: list[str] = []
    per_transaction = 500
    for start in range(0, n_runs, per_transaction):
        with store.session() as session:
            for i in range(start, min(start + per_transaction, n_runs)):
                run = runs.create(
                    session, "default", "bench", heartbeat_timeout_s=60, actor="bench"
                )
                batch = LogBatch(
                    params={f"p{j}": str(rng.randint(0, 9)) for j in range(5)},
                    metrics=[
                        MetricPoint(key=f"m{j}", value=rng.random(), step=i, timestamp_ms=i)
                        for j in range(n_metrics)
                    ],
                    tags={"team": rng.choice(["risk", "growth"]), "seed": str(i % 10)},
                )
                run_logs.log_batch(session, "default", run.id, batch)
                ids.append(run.id)
    return ids


def populate_registry(store: MetadataStore, run_ids: list[str], n_models: int) -> None:
    """``n_models`` registered models (``model-0000``...) of 3 versions each, version ``j`` of
    model ``i`` made from run ``3 i + j`` (the same as ``_mlflow_tracking.py``'s): search
    data only, so the packages are records with no files (their versions stay PENDING)."""
    rng = random.Random(11)
    for start in range(0, n_models, 200):
        with store.session() as session:
            for i in range(start, min(start + 200, n_models)):
                name = f"model-{i:04d}"
                team = rng.choice(["risk", "growth"])
                models.create(session, "default", name, tags={"team": team}, actor="bench")
                for j in range(3):
                    logged = logged_models.record(
                        session,
                        "default",
                        run_ids[(3 * i + j) % len(run_ids)],
                        path=f"model-{i}-{j}",
                        flavor="sklearn",
                        format="onnx",
                        manifest_sha256=f"{3 * i + j:064x}",
                        signature={},
                    )
                    info = lineage.logged_model(session, logged.id)
                    model_versions.create(session, "default", name, info, actor="bench")


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm the caches and the connection pool
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def report(label: str, samples: list[float], target: float | None) -> None:
    p50 = statistics.median(samples)
    p95 = statistics.quantiles(samples, n=20)[18]
    line = f"{label:<52} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms"
    if target is not None:
        verdict = "ok" if p50 <= target else "OVER"
        line += f"   target {target:.0f} ms  ratio {p50 / target:4.2f}  {verdict}"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--models", type=int, default=1000, help="registered models (servers)")
    parser.add_argument(
        "--mlflow-python",
        help="an interpreter with mlflow (its own venv): also compare with mlflow server",
    )
    args = parser.parse_args()
    if args.mlflow_python:
        compare_servers(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = MetadataStore(f"sqlite:///{Path(tmp) / 'loopml.db'}")
        store.upgrade()
        started = time.perf_counter()
        ids = populate(store, args.runs, args.metrics)
        took = time.perf_counter() - started
        print(
            f"populated {args.runs} runs x {args.metrics} metrics in {took:.1f} s "
            f"({args.runs / took:.0f} runs/s)"
        )
        target_run = ids[len(ids) // 2]
        step = iter(range(10**9))

        def log_batch() -> None:
            s = next(step)
            points = [
                MetricPoint(key=f"loss{j % 20}", value=j / 1000, step=s, timestamp_ms=j)
                for j in range(1000)
            ]
            tracking.log_batch(store, "default", target_run, LogBatch(metrics=points))

        spec = RunSearch(
            filters=[RunFilter.parse("metrics.m3 > 0.5")],
            order_by=[RunOrder.parse("metrics.m7 desc")],
            limit=100,
        )
        report("log_batch: 1,000 metric points", timed(log_batch, args.repeat), TARGET_BATCH_MS)
        search = timed(lambda: tracking.search_runs(store, "default", spec), args.repeat)
        report(f"search: filter+sort, page 1 of {args.runs} runs", search, TARGET_SEARCH_MS)
        page_2 = spec.model_copy(update={"cursor": "100"})
        report(
            "search: same, page 2",
            timed(lambda: tracking.search_runs(store, "default", page_2), args.repeat),
            TARGET_SEARCH_MS,
        )
        bare = spec.model_copy(update={"include": []})
        report(
            "search: same, ids and attributes only",
            timed(lambda: tracking.search_runs(store, "default", bare), args.repeat),
            None,
        )
        deep = spec.model_copy(update={"cursor": "4900"})
        report(
            "search: same, page 50 (offset 4,900)",
            timed(lambda: tracking.search_runs(store, "default", deep), args.repeat),
            None,
        )
        newest = RunSearch(limit=100)
        report(
            "search: newest first, no filter",
            timed(lambda: tracking.search_runs(store, "default", newest), args.repeat),
            None,
        )
        store.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _serving(command: list[str], url: str, env: dict[str, str], log: Path) -> Iterator[None]:
    """``command`` started in a session of its own, until ``url`` answers 200 (120 s at
    most); its whole process group stopped afterwards (``mlflow server`` starts uvicorn
    workers and job consumers that would outlive a SIGTERM to the leader alone)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None:
                    raise SystemExit(f"server exited:\n{log.read_text()[-2000:]}")
                time.sleep(0.2)
            else:
                raise SystemExit(f"{command[0]} did not answer {url} in 120 s")
            yield
        finally:
            _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the group, then SIGKILL to whatever of it is left."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _client(python: str, uri: str, repeat: int) -> dict[str, list[float]]:
    done = subprocess.run(
        [python, str(MLFLOW_SCRIPT), "client", uri, str(repeat)],
        capture_output=True,
        text=True,
        check=True,
    )
    samples: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return samples


def compare_servers(args: argparse.Namespace) -> None:
    """The same runs in loopml and in MLflow's server, timed through MLflow's client."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "MLFLOW_"))}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "loopml"
        home.mkdir()
        store = MetadataStore(f"sqlite:///{home / 'loopml.db'}")
        store.upgrade()
        run_ids = populate(store, args.runs, args.metrics)
        populate_registry(store, run_ids, args.models)
        store.dispose()
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        up = [sys.executable, "-m", "loopml.cli.main", "up", "--port", str(port)]
        with _serving(up, f"{url}/api/v1/health", {**env, "LOOPML_HOME": str(home)}, home / "log"):
            mine = _client(args.mlflow_python, url, args.repeat)
        db = Path(tmp) / "mlflow.db"
        started = time.perf_counter()
        subprocess.run(
            [
                args.mlflow_python,
                str(MLFLOW_SCRIPT),
                "populate",
                str(db),
                str(args.runs),
                str(args.metrics),
                str(args.models),
            ],
            check=True,
            capture_output=True,
        )
        print(f"mlflow store populated in {time.perf_counter() - started:.1f} s")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        server = [
            args.mlflow_python,
            "-m",
            "mlflow",
            "server",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            str(Path(tmp) / "mlflow-artifacts"),
        ]
        with _serving(server, f"{url}/health", env, Path(tmp) / "mlflow.log"):
            theirs = _client(args.mlflow_python, url, args.repeat)
    _print_comparison(args.runs, args.models, mine, theirs)


def _print_comparison(
    n_runs: int, n_models: int, mine: dict[str, list[float]], theirs: dict[str, list[float]]
) -> None:
    print(
        f"through the mlflow client, {n_runs} runs, {n_models} models x 3 versions, p50 (p95) in ms"
    )
    print(f"{'operation':<44} {'loopml':>16} {'mlflow server':>16} {'speed-up':>9}  target")
    rows: list[tuple[str, str, float | None]] = [
        ("search_runs: metric filter + order, 100 runs", "search", TARGET_SEARCH_RATIO),
        ("log_batch: 1,000 metric points", "log_batch", TARGET_BATCH_RATIO),
        ("search_registered_models: name LIKE, 100", "models_like", None),
        ("search_registered_models: first page, 100", "models_page", None),
        ("search_model_versions: name = ", "versions_name", None),
        ("search_model_versions: run_id = ", "versions_run", None),
    ]
    for label, key, target in rows:
        a, b = statistics.median(mine[key]), statistics.median(theirs[key])
        a95 = statistics.quantiles(mine[key], n=20)[18]
        b95 = statistics.quantiles(theirs[key], n=20)[18]
        goal = "" if target is None else f"  >= {target:.0f}x "
        goal += "" if target is None else ("ok" if b / a >= target else "SHORT")
        print(f"{label:<44} {a:7.1f} ({a95:6.1f}) {b:7.1f} ({b95:6.1f}) {b / a:8.1f}x{goal}")


if __name__ == "__main__":
    main()
