"""Ingest figures (issue 3): a CSV through `loopml ingest`, against a bare Arrow + Delta floor,
and NDJSON record posts from concurrent clients.

CSV, in one run:
- a seeded CSV of 1,000,000 rows x 10 mixed columns (``--rows`` shrinks it) in a temp folder;
- the floor: ``pyarrow.csv.read_csv`` + ``deltalake.write_deltalake`` into a temp folder;
- loopml: the ``loopml ingest`` CLI against a real ``loopml up`` started here on a free port
  with a temp home, each time into a fresh table;
- for reference, the in-process ``loopml.data.lake.ingest_arrow`` path (no HTTP).

Each is the best of 3, taken in turns (floor, in-process, CLI, then again), so that a noisy
neighbour on a shared machine weighs on all three alike. Target: loopml at least half the
floor's rows/s.

Records: a real ``loopml up`` (default settings, temp home); ``--clients`` (4) client
processes, each with one keep-alive connection, post NDJSON bodies of ``--records`` (1,000)
records of the CSV's 10 columns, each with its own ``Idempotency-Key`` as the SDK sends,
one post at a time, for ``--seconds``. Bodies are made before the clock starts, so the
clients measure the server. Target: at least 100,000 records/s. Every record must land once.

Run ``python bench/ingest.py [--part csv|records]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from deltalake import write_deltalake

RUNS = 3
TARGET_RATIO = 0.5
TARGET_RECORDS_PER_S = 100_000
RECORDS_TABLE = "events"


def _sample(rows: int, seed: int = 42, first_id: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    cities = np.array(["paris", "lyon", "oslo", "lima", "kyiv", "rome", "quito", "delhi"])
    start = np.datetime64("2024-01-01T00:00:00", "s")
    return pa.table(
        {
            "id": np.arange(first_id, first_id + rows, dtype=np.int64),
            "customer": rng.integers(0, 100_000, rows),
            "quantity": rng.integers(1, 50, rows, dtype=np.int32),
            "price": rng.uniform(0, 1000, rows).round(2),
            "discount": rng.uniform(0, 0.3, rows).round(3),
            "score": rng.normal(0, 1, rows),
            "city": cities[rng.integers(0, len(cities), rows)],
            "code": np.char.add("c", rng.integers(0, 10**6, rows).astype(str)),
            "returned": rng.random(rows) < 0.05,
            "at": start + rng.integers(0, 365 * 86_400, rows).astype("timedelta64[s]"),
        }
    )


def _make_csv(path: Path, rows: int) -> None:
    pacsv.write_csv(_sample(rows), path)


def _timed(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _csv_runs(csv: Path, work: Path) -> tuple[float, float, float]:
    """Best times of the floor, the in-process path and the CLI, run in turns."""
    from loopml.data import files, lake
    from loopml.storage import LocalArtifactStore
    from loopml.store import MetadataStore

    store = MetadataStore(f"sqlite:///{work / 'inproc.db'}")
    store.upgrade()
    artifacts = LocalArtifactStore(work / "inproc")
    loopml = str(Path(sys.executable).with_name("loopml"))
    best = [float("inf")] * 3
    try:
        with _server(work / "home") as (_, env, _):
            for i in range(RUNS):
                runs: list[Callable[[], None]] = [
                    lambda i=i: write_deltalake(
                        str(work / f"floor{i}"), pacsv.read_csv(csv), mode="append"
                    ),
                    lambda i=i: lake.ingest_arrow(
                        store,
                        artifacts,
                        "default",
                        f"t{i}",
                        files.read_upload(csv, "csv"),
                        actor="bench",
                    ),
                    lambda i=i: subprocess.run(
                        [loopml, "ingest", str(csv), "--table", f"cli{i}"],
                        env=env,
                        check=True,
                        stdout=subprocess.DEVNULL,
                    ),
                ]
                for k, run in enumerate(runs):
                    best[k] = min(best[k], _timed(run))
    finally:
        store.dispose()
    return best[0], best[1], best[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/health", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("loopml up did not become healthy in 60 s")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _server(home: Path) -> Iterator[tuple[str, dict[str, str], int]]:
    """A real ``loopml up`` on a free port with ``home``; yields its URL, environment and
    process id."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env.update(
        LOOPML_HOME=str(home),
        LOOPML_CLIENT_URL=url,
        LOOPML_CLIENT_TIMEOUT_S="600",
        OMP_WAIT_POLICY="passive",
    )
    loopml = str(Path(sys.executable).with_name("loopml"))
    server = subprocess.Popen(
        [loopml, "up", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_healthy(url, server)
        yield url, env, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def _ndjson_bodies(client: int, count: int, records: int) -> list[bytes]:
    """``count`` distinct NDJSON bodies of ``records`` records (ids unique across clients)."""
    import orjson

    bodies = []
    for i in range(count):
        first = (client * count + i) * records
        rows = _sample(records, seed=client * 100_003 + i, first_id=first).to_pylist()
        bodies.append(b"\n".join(orjson.dumps(row) for row in rows))
    return bodies


def _poster(url: str, client: int, args: tuple[int, float], start: Any, results: Any) -> None:
    """One client process: post pre-made bodies one at a time until the time is up."""
    import httpx

    records, seconds = args
    bodies = _ndjson_bodies(client, 64, records)
    path = f"/api/v1/projects/default/tables/{RECORDS_TABLE}/records"
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=60) as http:
        start.wait()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            body = bodies[len(latencies) % len(bodies)]
            headers = {"Content-Type": "application/x-ndjson", "Idempotency-Key": uuid.uuid4().hex}
            sent = time.perf_counter()
            response = http.post(path, content=body, headers=headers)
            latencies.append(time.perf_counter() - sent)
            if response.status_code != 201:
                raise RuntimeError(f"post refused: {response.status_code} {response.text[:300]}")
    results.put(latencies)


def _records(work: Path, clients: int, records: int, seconds: float) -> dict[str, float]:
    import httpx

    with _server(work / "records-home") as (url, _, pid):
        table_url = f"{url}/api/v1/projects/default/tables/{RECORDS_TABLE}"
        warm = _ndjson_bodies(999, 1, records)[0]
        headers = {"Content-Type": "application/x-ndjson"}
        httpx.post(f"{table_url}/records", content=warm, headers=headers).raise_for_status()
        before = httpx.get(table_url).json()
        context = multiprocessing.get_context("spawn")
        start, results = context.Barrier(clients + 1), context.Queue()
        procs = [
            context.Process(target=_poster, args=(url, i, (records, seconds), start, results))
            for i in range(clients)
        ]
        for proc in procs:
            proc.start()
        start.wait()
        began, cpu = time.perf_counter(), _cpu_seconds(pid)
        latencies = [results.get(timeout=seconds + 120) for _ in procs]
        elapsed, cpu = time.perf_counter() - began, _cpu_seconds(pid) - cpu
        for proc in procs:
            proc.join(timeout=30)
        after = httpx.get(table_url).json()
        history = httpx.get(f"{table_url}/history", params={"limit": 1000}).json()["items"]
    writes = [c for c in history if c["version"] > before["version"] and c["operation"] == "WRITE"]
    every = sorted(x for one in latencies for x in one)
    posts = len(every)
    landed = after["row_count"] - before["row_count"]
    if landed != posts * records:
        raise RuntimeError(f"{posts * records} records acknowledged, {landed} landed")
    return {
        "posts": posts,
        "records_per_s": posts * records / elapsed,
        "posts_per_s": posts / elapsed,
        "p50_ms": statistics.median(every) * 1000,
        "p99_ms": every[min(len(every) - 1, int(len(every) * 0.99))] * 1000,
        "commits": len(writes),
        "elapsed": elapsed,
        "server_cores": cpu / elapsed,
    }


def _report_records(found: dict[str, float], clients: int, records: int) -> None:
    rate = found["records_per_s"]
    per_commit = found["posts"] * records / max(found["commits"], 1)
    print(
        f"records: {clients} clients x NDJSON posts of {records:,} records, "
        f"{found['elapsed']:.1f} s, {found['posts']:,.0f} posts"
    )
    print(f"loopml POST .../records                {rate:12,.0f} records/s")
    latency = f"p50 {found['p50_ms']:.1f} ms   p99 {found['p99_ms']:.1f} ms"
    print(f"  {found['posts_per_s']:,.1f} posts/s   {latency}")
    print(f"  {found['commits']:,.0f} Delta commits ({per_commit:,.0f} records each)")
    cores = f"{found['server_cores']:.2f} of {os.cpu_count()} cores"
    print(f"  server CPU {cores} (the clients ran on the same machine)")
    verdict = "met" if rate >= TARGET_RECORDS_PER_S else "MISSED"
    print(
        f"records/s / target: {rate / TARGET_RECORDS_PER_S:.2f} "
        f"(target >= {TARGET_RECORDS_PER_S:,} records/s: {verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "csv", "records"], default="all")
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows in the CSV.")
    parser.add_argument("--clients", type=int, default=4, help="Record-posting processes.")
    parser.add_argument("--records", type=int, default=1000, help="Records per post.")
    parser.add_argument("--seconds", type=float, default=10.0, help="How long clients post.")
    args = parser.parse_args()
    if args.part in ("all", "csv"):
        _csv(args.rows)
    if args.part in ("all", "records"):
        with tempfile.TemporaryDirectory(prefix="loopml-bench-") as tmp:
            found = _records(Path(tmp), args.clients, args.records, args.seconds)
        _report_records(found, args.clients, args.records)


def _csv(rows: int) -> None:
    with tempfile.TemporaryDirectory(prefix="loopml-bench-") as tmp:
        work = Path(tmp)
        csv = work / "data.csv"
        started = time.perf_counter()
        _make_csv(csv, rows)
        made = time.perf_counter() - started
        print(f"CSV: {rows:,} rows x 10 columns, {csv.stat().st_size / 1e6:.0f} MB ({made:.1f} s)")
        floor, inproc, cli = _csv_runs(csv, work)
    ratio = floor / cli
    print(f"floor  read_csv + write_deltalake   {floor:6.2f} s  {rows / floor:12,.0f} rows/s")
    print(f"loopml ingest_arrow (in process)     {inproc:6.2f} s  {rows / inproc:12,.0f} rows/s")
    print(f"loopml ingest (CLI -> loopml up)     {cli:6.2f} s  {rows / cli:12,.0f} rows/s")
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(f"loopml ingest / floor: {ratio:.2f} (target >= {TARGET_RATIO}: {verdict})")


if __name__ == "__main__":
    main()
