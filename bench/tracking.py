"""Tracking benchmark on the embedded SQLite store.

10,000 runs with 20 latest metrics, 5 params and 2 tags each; then
- the time to log one 1,000-metric batch (``tracking.log_batch``, one transaction), and
- a search with a metric filter, a metric sort and one page (100 runs, with their params,
  latest metrics and tags) over the 10,000 runs (``tracking.search_runs``, one query).

Targets on SQLite: search p50 <= 50 ms, batch p50 <= 30 ms. Run: ``python bench/tracking.py``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from loopml.core.run_search import RunFilter, RunOrder, RunSearch
from loopml.core.runs import LogBatch, MetricPoint
from loopml.store import MetadataStore, run_logs, runs
from loopml.train import tracking

TARGET_SEARCH_MS = 50.0
TARGET_BATCH_MS = 30.0


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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
