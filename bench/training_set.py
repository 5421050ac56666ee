"""A point-in-time training set made whole by the product (issue 20): time and peak memory,
streamed (``offline.training_set``) against the same work in memory, in one run.

The inputs are ``bench/features.py``'s join inputs (``--rows`` entity rows, 3 views x
``--view-features`` features, ``--view-rows`` rows per view), ingested into a fresh
embedded home (not timed). Then, each in a fresh process of its own, warmed as a server is
(imports done, a query worker idle):

- **streamed**: ``offline.training_set``, the product's path: one SELECT in the query
  worker (ASOF joins, ``ORDER BY ALL``, spilling past DuckDB's 1 GB budget), written a
  batch at a time, hashed, profiled and split a column at a time, stored as a dataset
  version;
- **in memory**: the path training sets took before: every input read whole into the
  process, ``offline.point_in_time`` (the narrow ASOF join and Arrow's gather),
  ``datasets.create_version_from_rows`` (canonical sort, hash, profile, split in memory).

Both store a version with a 20 % eval split; the bench checks they have the same content
hash. Peak memory is the process's high-water mark (VmHWM) and its query workers' (their
largest ru_maxrss once stopped).

Run ``python bench/training_set.py [--rows N] [--view-rows N] [--view-features N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _features_join import TTL_S, _join_inputs

PROJECT = "default"


def _home(folder: Path) -> tuple[Any, Any]:
    from loopml.storage import LocalArtifactStore
    from loopml.store import MetadataStore

    store = MetadataStore(f"sqlite:///{folder / 'loopml.db'}")
    return store, LocalArtifactStore(folder / "artifacts")


def _view_yaml(v: int, features: list[str]) -> str:
    return (
        f"name: view_{v}\nentities: [user_id]\nevent_time: ts\nttl: {TTL_S // 86400}d\n"
        f"source: t{v}\nfeatures: [{', '.join(features)}]\n"
    )


def _prepare(args: argparse.Namespace, folder: Path) -> None:
    from loopml.data import lake
    from loopml.data.features import views

    store, artifacts = _home(folder)
    store.upgrade()
    entities, tables = _join_inputs(args)
    lake.ingest_arrow(store, artifacts, PROJECT, "labels", entities, actor="bench")
    for v, table in enumerate(tables):
        lake.ingest_arrow(store, artifacts, PROJECT, f"t{v}", table, actor="bench")
        features = [c for c in table.column_names if c.startswith("v")]
        views.apply(store, artifacts, PROJECT, _view_yaml(v, features), actor="bench")


def _in_memory(store: Any, artifacts: Any, name: str, split: Any) -> Any:
    from loopml.data import datasets
    from loopml.data.features import offline
    from loopml.data.features.views import get, view_sql
    from loopml.data.sources import materialize

    found = [get(store, PROJECT, f"view_{v}") for v in range(3)]
    base = materialize(store, artifacts, PROJECT, "labels")
    joined = [
        offline.JoinedView(v, materialize(store, artifacts, PROJECT, view_sql(v.spec)))
        for v in found
    ]
    rows = offline.point_in_time(base.table, "event_time", joined)
    read = sorted({*base.sources, *(s for j in joined for s in j.rows.sources)})
    return datasets.create_version_from_rows(
        store, artifacts, PROJECT, name, rows, source="bench", sources=read, split=split,
        actor="bench",
    )  # fmt: skip


def _phase(mode: str, folder: Path) -> None:
    """In the child: one training set; its figures as one JSON line."""
    from loopml.core.datasets import SplitSpec
    from loopml.data.features import offline
    from loopml.data.warehouse import _POOL, run_query

    store, artifacts = _home(folder)
    run_query("SELECT 1", lambda table, version: None, limit=1)  # a worker idle, as a server's
    split = SplitSpec(eval_fraction=0.2)
    started = time.perf_counter()
    if mode == "streamed":
        made = offline.training_set(
            store, artifacts, PROJECT, "streamed", entities="labels",
            views=["view_0", "view_1", "view_2"], split=split, actor="bench",
        )  # fmt: skip
    else:
        made = _in_memory(store, artifacts, "in_memory", split)
    seconds = time.perf_counter() - started
    _POOL.close()  # the workers stopped and waited for: their peaks are counted below
    with open("/proc/self/status", encoding="ascii") as status:
        own = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rows": made.row_count,
                "columns": len(made.columns),
                "hash": made.content_hash,
                "own_mib": own,
                "worker_mib": workers,
            }
        ),
        flush=True,
    )


def _run(mode: str, folder: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", mode, "--home", str(folder)]
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"the {mode} run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--view-rows", type=int, default=200_000)
    parser.add_argument("--view-features", type=int, default=100)
    parser.add_argument("--skip-in-memory", action="store_true")
    parser.add_argument("--phase", choices=["streamed", "in-memory"], help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _phase(args.phase, Path(args.home))
        return
    with tempfile.TemporaryDirectory(prefix="loopml-bench-training-set-") as name:
        folder = Path(name)
        started = time.perf_counter()
        _prepare(args, folder)
        print(
            f"Training set: {args.rows:,} entity rows x 3 views x {args.view_features} features "
            f"({args.view_rows:,} rows per view), TTL {TTL_S // 86400} days, 20 % eval split "
            f"(inputs ingested in {time.perf_counter() - started:.1f} s)"
        )
        modes = ["streamed"] if args.skip_in_memory else ["in-memory", "streamed"]
        results = {mode: _run(mode, folder) for mode in modes}
    for mode, f in results.items():
        print(
            f"  {mode:<10} {f['seconds']:8.2f} s  {args.rows / f['seconds']:10,.0f} rows/s  "
            f"process peak {f['own_mib']:7,.0f} MiB  query worker peak {f['worker_mib']:7,.0f} MiB"
            f"  ({f['rows']:,} rows x {f['columns']} columns)"
        )
    if len(results) == 2:
        a, b = results["in-memory"], results["streamed"]
        print(
            f"  streamed / in memory: time {b['seconds'] / a['seconds']:.2f}x, process peak "
            f"{b['own_mib'] / a['own_mib']:.2f}x; same content hash: {a['hash'] == b['hash']}"
        )


if __name__ == "__main__":
    main()
