"""The point-in-time join figures of ``bench/features.py`` (its part 2; see its docstring):
loopml's ``offline.point_in_time`` against pandas ``merge_asof`` and, with
``--feast-python``, Feast's ``get_historical_features``, each in a process of its own.
``bench/training_set.py`` builds its inputs with ``_join_inputs``."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from features import FEAST_SIDE, NOW_US, TTL_S, bench_view


def _join_inputs(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(11)
    users = max(1, args.view_rows // 4)
    start = NOW_US - 90 * 86400 * 1_000_000
    span = 90 * 86400 * 1_000_000
    entities = pa.table(
        {
            "user_id": pa.array(rng.integers(0, users, args.rows), pa.int64()),
            "event_time": pa.array(
                rng.integers(start, start + span, args.rows), pa.timestamp("us", tz="UTC")
            ),
            "label": pa.array(rng.integers(0, 2, args.rows), pa.int8()),
        }
    )
    views = []
    for v in range(3):
        columns: dict[str, Any] = {
            "user_id": pa.array(rng.integers(0, users, args.view_rows), pa.int64()),
            "ts": pa.array(
                rng.integers(start, start + span, args.view_rows), pa.timestamp("us", tz="UTC")
            ),
        }
        for i in range(args.view_features):
            columns[f"v{v}_f{i}"] = pa.array(rng.random(args.view_rows), pa.float64())
        views.append(pa.table(columns))
    return entities, views


def _loopml_join(args: argparse.Namespace) -> Any:
    from loopml.data.features.offline import JoinedView, point_in_time
    from loopml.data.sources import Materialized

    entities, tables = _join_inputs(args)
    joined = []
    for v, table in enumerate(tables):
        features = [c for c in table.column_names if c.startswith("v")]
        view = bench_view(f"view_{v}", f"t{v}", features)
        joined.append(JoinedView(view, Materialized(table=table, sources=[], query=None)))
    started = time.perf_counter()
    result = point_in_time(entities, "event_time", joined)
    return time.perf_counter() - started, result.slice(0, 2000).to_pandas()


def _pandas_join(args: argparse.Namespace) -> Any:
    import pandas as pd

    entities, tables = _join_inputs(args)
    frame = entities.to_pandas()
    views = [t.to_pandas() for t in tables]
    started = time.perf_counter()
    frame["__row"] = range(len(frame))
    frame = frame.sort_values("event_time")
    for view in views:
        view = view.sort_values("ts")
        frame = pd.merge_asof(
            frame,
            view,
            left_on="event_time",
            right_on="ts",
            by="user_id",
            direction="backward",
            tolerance=pd.Timedelta(seconds=TTL_S),
        ).drop(columns=["ts"])
    frame = frame.sort_values("__row").drop(columns=["__row"]).reset_index(drop=True)
    return time.perf_counter() - started, frame.head(2000)


def _child(name: str, args: argparse.Namespace, queue: Any) -> None:
    seconds, head = (_loopml_join if name == "loopml" else _pandas_join)(args)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((seconds, peak_mib, head))


def _feast_join(args: argparse.Namespace) -> tuple[float, float, Any, str, int] | None:
    """Feast's ``get_historical_features`` on the same inputs, in its own environment."""
    if not args.feast_python:
        return None
    import pandas as pd
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="loopml-bench-feast-join-") as folder:
        work = Path(folder)
        entities, tables = _join_inputs(args)
        pq.write_table(entities, work / "entities.parquet")
        for v, table in enumerate(tables):
            pq.write_table(table, work / f"view_{v}.parquet")
        del entities, tables
        command = [args.feast_python, str(FEAST_SIDE), "join", folder, "--ttl-s", str(TTL_S)]
        done = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"Feast's side failed ({done.returncode}):\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        head = pd.read_parquet(work / "feast_head.parquet")
    return result["seconds"], result["peak_mib"], head, result["feast"], result["rows"]


def join(args: argparse.Namespace) -> None:
    context = multiprocessing.get_context("spawn")
    results = {}
    for name in ("pandas", "loopml"):
        queue = context.Queue()
        process = context.Process(target=_child, args=(name, args, queue))
        process.start()
        results[name] = queue.get()
        process.join()
    feast = _feast_join(args)
    (base_s, base_mib, base_head), (own_s, own_mib, own_head) = results["pandas"], results["loopml"]
    columns = [c for c in base_head.columns if c.startswith("v")]
    same = base_head[columns].equals(own_head[columns])
    print(
        f"Point-in-time join: {args.rows} entity rows x 3 views x {args.view_features} "
        f"features ({args.view_rows} rows per view), TTL {TTL_S // 86400} days"
    )

    def line(label: str, seconds: float, mib: float, ratios: str) -> None:
        print(
            f"  {label:<38} {seconds:8.2f} s  {args.rows / seconds:12,.0f} rows/s  "
            f"peak {mib:8,.0f} MiB (inputs included){ratios}"
        )

    line("baseline: pandas merge_asof", base_s, base_mib, "")
    if feast is not None:
        line(f"Feast {feast[3]} get_historical_features", feast[0], feast[1], "")
    ratios = f"  {base_s / own_s:.1f}x pandas"
    if feast is not None:
        ratios += f", {feast[0] / own_s:.1f}x Feast (Feast's peak {feast[1] / own_mib:.1f}x)"
    line("loopml point_in_time (DuckDB ASOF)", own_s, own_mib, ratios)
    print(f"  same values on the first 2,000 rows (pandas, loopml): {same}")
    if feast is None:
        print("  Feast not measured (no --feast-python)")
    else:
        print(f"  Feast returned {feast[4]:,} of the {args.rows:,} entity rows (see below)")
        theirs = feast[2]
        ours = own_head.iloc[theirs["__row"].to_numpy()].reset_index(drop=True)
        feast_same = theirs[columns].equals(ours[columns])
        print(
            f"  same values on the {len(theirs)} of the first 2,000 rows Feast returned "
            f"(Feast, loopml): {feast_same}"
        )
        print(
            "  (Feast's file store drops an entity row whose key has rows in a view but none "
            "within the TTL; loopml and pandas keep it with nulls)"
        )
