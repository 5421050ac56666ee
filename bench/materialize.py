"""Materializing a feature view into the online store (issue 20): a full run against an
incremental one after ``--changed`` (1 %) new rows, in one run, with each run's peak memory.

The view reads a lake table of ``--rows`` (10,000,000) rows: ``--entities`` (1,000,000)
users, an event time spread over 90 days and ``--features`` (10) float features, written
as one Delta commit in an embedded home (SQLite metadata, a local folder). Then:

1. a **full** materialize (``materialize(..., full=True)``): every row read, each user's
   newest written to the online store;
2. ``--changed`` x rows appended as a second commit, each a later value of a random user;
3. an **incremental** materialize: only the rows after the first run's watermark.

Each materialize runs in a child process of its own, warmed as a running server is (a
one-row view materialized first: the imports done, a query worker idle), so its time is
its own: the bench
prints that process's peak resident memory (``VmHWM``, imports included) and its query
worker's (where DuckDB finds each entity's newest row), beside the size of the view's rows
in Arrow memory, the figure a run that read the source whole would hold. After the
incremental run, a sample of the changed users is read back and checked against the values
appended. Target (the issue): the incremental run takes at most 5 % of the full run's time.

Two shapes by default: as many users as rows (1 % new rows update 1 % of the entities: the
issue's "1 % changed rows"), then a tenth as many (each user has 10 rows, and 1 % new rows
touch 10 % of the entities).

Run ``python bench/materialize.py [--rows N] [--entities N] [--features N]
[--online sqlite|redis]``.
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
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REDIS_URL = os.environ.get("LOOPML_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TARGET_SHARE = 0.05
PROJECT = "default"
VIEW = "user_stats"
WARM, WARM_VIEW = "warm_stats", "warm_view"
START_US = int(datetime(2026, 8, 1, tzinfo=UTC).timestamp() * 1_000_000)
SPAN_US = 90 * 86400 * 1_000_000
BATCH_ROWS = 500_000


def _home(folder: Path) -> tuple[Any, Any]:
    from loopml.storage import LocalArtifactStore
    from loopml.store import MetadataStore

    store = MetadataStore(f"sqlite:///{folder / 'loopml.db'}")
    store.upgrade()
    return store, LocalArtifactStore(folder / "artifacts")


def _online(args: argparse.Namespace, folder: Path) -> Any:
    from loopml.core.features import RedisOnlineStoreConfig, SqliteOnlineStoreConfig
    from loopml.data.features.online import open_online_store

    if args.online == "redis":
        config = RedisOnlineStoreConfig(type="redis", url=REDIS_URL, key_prefix=args.prefix)
        return open_online_store(config, folder)
    return open_online_store(SqliteOnlineStoreConfig(), folder)


def _batches(rows: int, entities: int, features: int, start: int, span: int, seed: int) -> Any:
    """``rows`` rows as record batches, times in [start, start + span): random users, or
    each user once (in random order) when ``rows`` is at most ``entities``."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    once = rng.permutation(entities)[:rows] if rows <= entities else None
    done = 0
    while done < rows:
        n = min(BATCH_ROWS, rows - done)
        users = rng.integers(0, entities, n) if once is None else once[done : done + n]
        columns: dict[str, Any] = {
            "user_id": pa.array(users, pa.int64()),
            "ts": pa.array(rng.integers(start, start + span, n), pa.timestamp("us", tz="UTC")),
        }
        for i in range(features):
            columns[f"f{i}"] = pa.array(rng.random(n), pa.float64())
        yield pa.RecordBatch.from_pydict(columns)
        done += n


def _ingest(
    store: Any, artifacts: Any, batches: list[Any] | Any, schema: Any, table: str = "stats"
) -> int:
    import pyarrow as pa

    from loopml.data import lake

    reader = pa.RecordBatchReader.from_batches(schema, batches)
    commit = lake.ingest_arrow(store, artifacts, PROJECT, table, reader, actor="bench")
    return int(commit.version)


def _schema(features: int) -> Any:
    import pyarrow as pa

    fields = [pa.field("user_id", pa.int64()), pa.field("ts", pa.timestamp("us", tz="UTC"))]
    return pa.schema(fields + [pa.field(f"f{i}", pa.float64()) for i in range(features)])


def _view_yaml(features: int) -> str:
    names = ", ".join(f"f{i}" for i in range(features))
    return (
        f"name: {VIEW}\nentities: [user_id]\nevent_time: ts\nttl: 365d\nsource: stats\n"
        f"features: [{names}]\n"
    )


def _phase(args: argparse.Namespace) -> None:
    """In the child: one materialize; its figures as one JSON line."""
    from loopml.data.features.materialize import materialize
    from loopml.data.warehouse import _POOL

    folder = Path(args.home)
    store, artifacts = _home(folder)
    online = _online(args, folder)
    # As in a running server: the imports done, a query worker idle in the pool, the
    # online store open (a view of one row first, full each time).
    materialize(store, artifacts, online, PROJECT, WARM_VIEW, full=True, actor="bench")
    started = time.perf_counter()
    done = materialize(
        store, artifacts, online, PROJECT, VIEW, full=args.phase == "full", actor="bench"
    )
    seconds = time.perf_counter() - started
    online.close()
    _POOL.close()  # its workers stopped and waited for: their peaks are counted below
    # VmHWM, not ru_maxrss: a process's ru_maxrss starts at its parent's size at the fork
    # and survives the exec, so it would count this bench's own data.
    own = _status_mib("VmHWM:")
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    figures = {
        "seconds": seconds,
        "full": done.full,
        "rows_read": done.rows_read,
        "entities_written": done.entities_written,
        "own_mib": own,
        "worker_mib": workers,
    }
    print(json.dumps(figures), flush=True)


def _status_mib(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith(field))


def _run_phase(args: argparse.Namespace, folder: Path, phase: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", phase, "--home", str(folder)]
    command += ["--online", args.online, "--prefix", args.prefix]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, _ = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"the {phase} materialize failed (exit {child.returncode})")
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return figures


def _check(args: argparse.Namespace, folder: Path, changed: Any) -> int:
    """Read back up to 1,000 changed users; each must hold its newest appended values."""
    from loopml.data.features.materialize import read_online

    store, _ = _home(folder)
    online = _online(args, folder)
    newest: dict[int, tuple[int, list[float]]] = {}
    for record in changed.to_pylist():
        stamp = int(record["ts"].timestamp() * 1_000_000)
        user = record["user_id"]
        if user not in newest or stamp > newest[user][0]:
            newest[user] = (stamp, [record[f"f{i}"] for i in range(args.features)])
    users = sorted(newest)[:1000]
    found = read_online(store, online, PROJECT, VIEW, [{"user_id": u} for u in users])
    online.close()
    wrong = 0
    for user, got in zip(users, found, strict=True):
        want = newest[user][1]
        if got.values is None or [got.values[f"f{i}"] for i in range(args.features)] != want:
            wrong += 1
    return wrong


def _shape(args: argparse.Namespace, entities: int) -> dict[str, Any]:
    """One view of ``args.rows`` rows and ``entities`` users: full, new rows, incremental."""
    import pyarrow as pa

    from loopml.data.features import views

    schema = _schema(args.features)
    with tempfile.TemporaryDirectory(prefix="loopml-bench-materialize-") as name:
        folder = Path(name)
        store, artifacts = _home(folder)
        started = time.perf_counter()
        batches = _batches(args.rows, entities, args.features, START_US, SPAN_US, 1)
        _ingest(store, artifacts, batches, schema)
        print(
            f"{args.rows:,} rows x {args.features} features, {entities:,} users, written in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        views.apply(store, artifacts, PROJECT, _view_yaml(args.features), actor="bench")
        _ingest(store, artifacts, _batches(1, 1, args.features, START_US, 1, 3), schema, WARM)
        warm = _view_yaml(args.features).replace(VIEW, WARM_VIEW).replace("stats", WARM)
        views.apply(store, artifacts, PROJECT, warm, actor="bench")
        full = _run_phase(args, folder, "full")
        changed_rows = max(1, int(args.rows * args.changed))
        day_us = 86400 * 1_000_000
        later = _batches(changed_rows, entities, args.features, START_US + SPAN_US, day_us, 2)
        changed = pa.Table.from_batches(list(later), schema=schema)
        _ingest(store, artifacts, changed.to_batches(), schema)
        incremental = _run_phase(args, folder, "incremental")
        wrong = _check(args, folder, changed)
        store.dispose()
        if args.online == "redis":
            _drop_redis(args.prefix)
    return {"entities": entities, "full": full, "incremental": incremental, "wrong": wrong}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument(
        "--entities",
        type=int,
        nargs="+",
        help="users in the view, one shape per number (default: as many as rows, then a "
        "tenth of them)",
    )
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--online", choices=["sqlite", "redis"], default="sqlite")
    parser.add_argument("--phase", choices=["full", "incremental"], help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default=f"loopml-bench:{uuid.uuid4().hex}")
    args = parser.parse_args()
    if args.phase:
        _phase(args)
        return
    arrow_mib = args.rows * (8 + 8 + 8 * args.features) / 2**20
    print(f"online store: {args.online}; the view's rows take {arrow_mib:,.0f} MiB in Arrow")
    shapes = [_shape(args, n) for n in args.entities or [args.rows, args.rows // 10]]
    print(
        "\n| users | materialize | time | rows read | entities written | peak memory: the "
        "run's process | its query worker |"
    )
    print("|---|---|---|---|---|---|---|")
    for shape in shapes:
        for label, f in (("full", shape["full"]), ("incremental", shape["incremental"])):
            memory = f"{f['own_mib']:,.0f} MiB | {f['worker_mib']:,.0f} MiB"
            print(
                f"| {shape['entities']:,} | {label} | {f['seconds']:.2f} s | {f['rows_read']:,} | "
                f"{f['entities_written']:,} | {memory} |"
            )
    print()
    for shape in shapes:
        share = shape["incremental"]["seconds"] / shape["full"]["seconds"]
        verdict = "met" if share <= TARGET_SHARE else "NOT met"
        print(
            f"{shape['entities']:,} users, {args.changed:.0%} new rows: incremental / full "
            f"{share:.1%} (target <= {TARGET_SHARE:.0%}: {verdict}); changed users read back: "
            + ("all right" if shape["wrong"] == 0 else f"{shape['wrong']} WRONG")
        )
    if any(shape["wrong"] for shape in shapes):
        raise SystemExit(1)


def _drop_redis(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*", count=10_000):
        client.delete(key)
    client.close()


if __name__ == "__main__":
    main()
