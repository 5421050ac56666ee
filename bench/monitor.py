"""Monitoring benchmark (the monitoring issue): drift of one window of 1,000,000 predictions x
30 features against the model's training reference, loopml against Evidently, in one run.

Data: a training split of ``--reference`` rows (default 100,000) and a window of ``--rows``
rows (default 1,000,000), 24 numeric columns (normal, lognormal, uniform and integer) and 6
categorical ones (5 to 40 values); in the window, 3 numeric columns and 1 categorical one are
shifted. Both are written to Parquet in a temporary folder.

1. loopml (this process, pinned to one core; NumPy's element-wise work is single-threaded):
   the reference profile is built once from the training split (timed apart: it happens
   when a version is registered), then the window's columns (in memory) are reduced against
   it and the drift of every column computed (``loopml.monitor``): the timed figure.
2. loopml streaming, in a child process on one core: the window read from Parquet one row
   group of 100,000 rows at a time, reduced and merged, then judged: time and peak RSS of
   the whole process (``VmHWM``, which includes the Parquet reader's own buffers); and the
   computation's own peak allocation beyond the window's arrays (``tracemalloc``, which
   NumPy reports to): the figures for "a window's computation stays under 500 MB".
3. Evidently's ``DataDriftPreset`` on the same two Parquet files, in a virtual environment of
   its own (``.bench-venvs/evidently``, git-ignored, created here with
   ``pip install evidently==0.7.23 "pandas<2.3"`` when missing, since its pins differ from
   loopml's), pinned to the same core; ``Report.run`` is timed (the pandas frames are read before).

4. A real monitor round: ``--round-rows`` rows (default 200,000) of the window written to a
   deployment's prediction log through the log's own row builder (``PredictionRecord`` ->
   ``record_rows`` -> Arrow, appended 5,000 rows at a time as ``PredictionLog`` does, inputs
   as the JSON text the log keeps), with the reference profile of the training split stored
   for the deployment's model version (SQLite and a local lake in a temporary home). Then,
   in a child process on one core, one ``Monitor.tick()`` (reading the log, parsing the
   inputs' JSON, reducing, merging into the 1 h and 1 d windows, judging, storing) is timed,
   with the child's peak RSS; and the same rows read again and their inputs decoded alone
   (``windows._inputs``), for how much of the round is reading and JSON decoding.

Targets: loopml <= 1 s, >= 20 x faster than Evidently, peak RSS < 500 MB. Wall and CPU time
are both printed: on a shared machine the CPU time is the steadier figure.

Run: ``python bench/monitor.py [--rows 1000000] [--reference 100000] [--skip-evidently]
[--round-rows 200000 | 1000000] [--skip-round]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".bench-venvs" / "evidently"
EVIDENTLY = ["evidently==0.7.23", "pandas>=2.2,<2.3"]  # 0.7.23 imports what pandas 3 removed
NUMERIC, CATEGORICAL = 24, 6
SHIFTED = {"n0", "n5", "n10", "c0"}
BATCH = 100_000

_EVIDENTLY_SCRIPT = r"""
import json, os, sys, time
os.sched_setaffinity(0, {0})
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
ref_path, cur_path, numeric, categorical = sys.argv[1:5]
numeric, categorical = numeric.split(","), categorical.split(",")
definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
ref = Dataset.from_pandas(pd.read_parquet(ref_path), data_definition=definition)
cur = Dataset.from_pandas(pd.read_parquet(cur_path), data_definition=definition)
started, cpu = time.perf_counter(), time.process_time()
snapshot = Report([DataDriftPreset()]).run(cur, ref)
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
drifted = []
for metric in snapshot.dict()["metrics"]:
    name, value = metric.get("metric_name", ""), metric.get("value")
    if name.startswith("ValueDrift") and isinstance(value, (int, float)):
        column = name.split("column=")[1].split(",")[0].rstrip(")")
        method = name.split("method=")[1].split(",")[0] if "method=" in name else ""
        drifted.append([column, float(value), method])
print(json.dumps({"seconds": elapsed, "cpu_s": cpu, "values": drifted}))
"""


def _data(rows: int, reference: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(seed)

    def make(n: int, shift: bool) -> pa.Table:
        columns: dict[str, pa.Array] = {}
        for i in range(NUMERIC):
            moved = shift and f"n{i}" in SHIFTED
            kind = i % 4
            if kind == 0:
                values = rng.normal(0.5 if moved else 0.0, 1.0, n)
            elif kind == 1:
                values = rng.lognormal(0.3 if moved else 0.0, 0.5, n)
            elif kind == 2:
                values = rng.uniform(0.0, 1.2 if moved else 1.0, n)
            else:
                values = rng.poisson(4.0, n).astype(np.float64)
            columns[f"n{i}"] = pa.array(values)
        for j in range(CATEGORICAL):
            size = 5 + 7 * j
            weights = np.linspace(1.0, 2.0, size)
            if shift and f"c{j}" in SHIFTED:
                weights = weights[::-1] ** 3
            codes = rng.choice(size, n, p=weights / weights.sum())
            labels = np.array([f"v{k}" for k in range(size)])
            columns[f"c{j}"] = pa.array(labels[codes])
        return pa.table(columns)

    return make(reference, False), make(rows, True)


def _loopml(ref: pa.Table, cur: pa.Table) -> dict[str, object]:
    from loopml.monitor.drift import dataset_drift
    from loopml.monitor.sketch import categorical_reference, numeric_reference, reduce

    started = time.perf_counter()
    references = {
        name: numeric_reference(ref[name])
        if name.startswith("n")
        else categorical_reference(ref[name])
        for name in ref.column_names
    }
    built = time.perf_counter() - started
    arrays = {name: cur[name].combine_chunks() for name in cur.column_names}
    numeric = {n: np.asarray(a.to_numpy()) for n, a in arrays.items() if n.startswith("n")}
    started, cpu = time.perf_counter(), time.process_time()
    windows = {
        name: reduce(references[name], numeric.get(name, arrays[name])) for name in cur.column_names
    }
    result = dataset_drift(references, windows)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    # Again under tracemalloc (NumPy reports its buffers to it), for the computation's own
    # peak beyond the window it reads; not timed, tracing slows allocation.
    tracemalloc.start()
    for name in cur.column_names:
        reduce(references[name], numeric.get(name, arrays[name]))
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    drifted = sorted(c.column for c in result.columns if c.drifted)
    scores = {c.column: (c.method, c.score) for c in result.columns}
    return {
        "seconds": elapsed,
        "cpu_s": cpu,
        "reference_s": built,
        "drifted": drifted,
        "peak_mb": peak,
        "scores": scores,
    }


def _streaming(ref_path: Path, cur_path: Path) -> dict[str, float]:
    code = f"""
import json, os, sys, time
os.sched_setaffinity(0, {{0}})

def peak_mb():
    # VmHWM: this process's own peak RSS (ru_maxrss would carry over the parent's, which
    # holds the whole window in memory, through fork and exec).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

import pyarrow.parquet as pq
from loopml.monitor.drift import dataset_drift
from loopml.monitor.sketch import categorical_reference, merge, numeric_reference, reduce
ref = pq.read_table({str(ref_path)!r})
refs = {{n: numeric_reference(ref[n]) if n.startswith("n") else categorical_reference(ref[n])
        for n in ref.column_names}}
del ref
before = peak_mb()
started = time.perf_counter()
windows = {{}}
source = pq.ParquetFile({str(cur_path)!r})
for group in range(source.num_row_groups):  # iter_batches kept every batch's buffers alive
    batch = source.read_row_group(group)
    for name in batch.schema.names:
        part = reduce(refs[name], batch.column(name))
        windows[name] = merge(windows[name], part) if name in windows else part
result = dataset_drift(refs, windows)
elapsed = time.perf_counter() - started
print(json.dumps({{"seconds": elapsed, "peak_mb": peak_mb(), "before_mb": before}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    answer: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return answer


LOG_APPEND_ROWS = 5_000  # PredictionLog's max_batch: rows per append to the log
REQUEST_ROWS = 50  # rows per served request (one PredictionRecord)


def _write_log(home: Path, ref: pa.Table, window: pa.Table) -> float:
    """A deployment whose version has the reference of ``ref``, and ``window``'s rows in its
    prediction log (within one hour, ending two hours ago); seconds spent writing."""
    from datetime import UTC, datetime, timedelta

    from loopml.core.deployments import DeploymentSpec, prediction_table
    from loopml.data import lake
    from loopml.monitor.reference import Reference, profile_table
    from loopml.monitor.reference_store import save_reference
    from loopml.platform.startup import build_context
    from loopml.predictions import _rows
    from loopml.predictions.intake import PredictionRecord
    from loopml.settings import Settings
    from loopml.store import deployments

    ctx = build_context(Settings(home=home))
    ctx.store.upgrade()
    with ctx.store.session() as session:
        deployments.create(
            session,
            "default",
            "bench-api",
            spec=DeploymentSpec(model="churn/1", min_replicas=0),
            revisions=[deployments.NewRevision(1, "churn", 1, "churn/1", "primary")],
            roles=deployments.Roles(primary=1),
            traffic={1: 100},
            actor="bench",
        )
    kinds = {n: "numeric" if n.startswith("n") else "categorical" for n in ref.column_names}
    profile = profile_table(
        ref,
        kinds,  # type: ignore[arg-type]
        task="classification",
        predictions=(np.asarray(ref["n1"]) > 1.0).astype(int),
        classes=["0", "1"],
    )
    reference = Reference(status="ready", source="bench training split", profile=profile)
    save_reference(ctx.store, "default", "churn", 1, reference)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    columns = {n: window[n].to_numpy(zero_copy_only=False) for n in window.column_names}
    score = 1 / (1 + np.exp(-(columns["n1"] - 1.0)))
    rows = window.num_rows
    started = time.perf_counter()
    for first in range(0, rows, LOG_APPEND_ROWS):
        built = []
        for start in range(first, min(first + LOG_APPEND_ROWS, rows), REQUEST_ROWS):
            end = min(start + REQUEST_ROWS, rows)
            record = PredictionRecord(
                inference_id=f"req-{start}",
                deployment="bench-api",
                model="churn",
                version=1,
                timestamp=(hour + timedelta(seconds=3000 * start / rows)).timestamp(),
                latency_s=0.002,
                protocol="predict",
                inputs={n: c[start:end] for n, c in columns.items()},
                predictions=(score[start:end] > 0.5).astype(int),
                probabilities=np.column_stack([1 - score[start:end], score[start:end]]),
                classes=["0", "1"],
            )
            built += _rows.record_rows(record, "primary")
        lake.ingest_arrow(
            ctx.store,
            ctx.artifacts,
            "default",
            prediction_table("bench-api"),
            _rows.to_arrow(built),
            actor="bench",
        )
    elapsed = time.perf_counter() - started
    ctx.store.dispose()
    return elapsed


def _round_child(home: str) -> None:
    """(In a child process on one core.) One monitor round over the log ``_write_log``
    wrote, then the same rows read and decoded alone; JSON on stdout."""
    os.sched_setaffinity(0, {0})
    from datetime import UTC, datetime, timedelta

    from loopml.monitor.engine import Monitor
    from loopml.monitor.windows import _inputs
    from loopml.platform.startup import build_context
    from loopml.predictions import reader
    from loopml.settings import MonitorSettings, Settings

    def peak_mb() -> float:
        for line in open("/proc/self/status"):  # noqa: SIM115 - read once, closed on exit
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    ctx = build_context(Settings(home=Path(home)))
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    settings = MonitorSettings(enabled=False, lag_s=0, default_rules=[])
    monitor = Monitor(ctx.store, ctx.artifacts, settings, clock=lambda: now)
    before = peak_mb()
    started, cpu = time.perf_counter(), time.process_time()
    report = monitor.tick()
    tick_s, tick_cpu = time.perf_counter() - started, time.process_time() - cpu
    tick_peak = peak_mb()
    reference = monitor.reference("default", "churn", 1)
    read_s = decode_s = decode_cpu = 0.0
    started = time.perf_counter()
    batches = reader.predictions_between(
        ctx.store, ctx.artifacts, "default", "bench-api", now - timedelta(days=1), now
    )
    for table in batches:
        read_s += time.perf_counter() - started
        begun, cpu = time.perf_counter(), time.process_time()
        _inputs(table, reference)
        decode_s += time.perf_counter() - begun
        decode_cpu += time.process_time() - cpu
        started = time.perf_counter()
    ctx.store.dispose()
    print(
        json.dumps(
            {
                "rows": report.rows,
                "windows": report.windows,
                "events": report.events,
                "tick_s": tick_s,
                "tick_cpu_s": tick_cpu,
                "before_mb": before,
                "peak_mb": tick_peak,
                "read_s": read_s,
                "decode_s": decode_s,
                "decode_cpu_s": decode_cpu,
            }
        )
    )


def _real_round(ref: pa.Table, cur: pa.Table, rows: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="loopml-bench-round-") as home:
        written = _write_log(Path(home), ref, cur.slice(0, rows))
        out = subprocess.run(
            [sys.executable, __file__, "--round-child", home],
            capture_output=True,
            text=True,
            check=True,
            timeout=1800,
        )
    answer: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    answer["write_s"] = written
    return answer


def _print_round(got: dict[str, float]) -> None:
    rows = got["rows"]
    per_row = 1e6 / rows if rows else float("nan")

    def line(label: str, seconds: float, note: str = "") -> None:
        print(f"{label:<34}{seconds:>12.2f}  {note}".rstrip())

    def row_cost(seconds: float) -> str:
        return f"({seconds * per_row:.1f} us a row, {seconds / got['tick_s']:.0%} of the round)"

    print(f"\nA real monitor round: {rows:,} prediction-log rows, inputs as JSON text, one core")
    line("written through the log, s", got["write_s"])
    line("Monitor.tick(), s", got["tick_s"], f"({got['tick_s'] * per_row:.1f} us a row)")
    line("  its CPU time, s", got["tick_cpu_s"])
    print(f"{'  windows written':<34}{got['windows']:>12}")
    line("rows read again alone, s", got["read_s"], row_cost(got["read_s"]))
    line("inputs' JSON decoded alone, s", got["decode_s"], row_cost(got["decode_s"]))
    cpu = got["decode_cpu_s"]
    line(
        "  its CPU time, s",
        cpu,
        f"({cpu * per_row:.1f} us a row, of the round's CPU time {cpu / got['tick_cpu_s']:.0%})",
    )
    print(f"{'round peak RSS (VmHWM), MB':<34}{got['peak_mb']:>12.0f}")
    print(f"{'  of which before the round, MB':<34}{got['before_mb']:>12.0f}")


def _evidently_python() -> Path | None:
    python = VENV / "bin" / "python"
    if python.exists():
        return python
    print(f"creating {VENV} with {EVIDENTLY} (once; a few minutes)...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *EVIDENTLY], check=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"could not install Evidently ({exc}): comparison skipped")
        return None
    return python


def _evidently(ref_path: Path, cur_path: Path, names: list[str]) -> dict[str, object] | None:
    python = _evidently_python()
    if python is None:
        return None
    numeric = ",".join(n for n in names if n.startswith("n"))
    categorical = ",".join(n for n in names if n.startswith("c"))
    script = ref_path.parent / "evidently_run.py"
    script.write_text(_EVIDENTLY_SCRIPT)
    args = [str(python), str(script), str(ref_path), str(cur_path), numeric, categorical]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=1200)
    except subprocess.TimeoutExpired:
        print("Evidently did not finish within 20 minutes")
        return None
    if out.returncode != 0:
        print(f"Evidently failed (exit {out.returncode}): {out.stderr.strip()[-600:]}")
        return None
    answer: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return answer


def _compare(ours: dict[str, tuple[str, float]], theirs: list[list[object]]) -> None:
    """Each column's statistic from both, side by side (same test, same threshold 0.1)."""
    gaps = []
    print(f"{'column':<8}{'test':<14}{'loopml':>10}{'Evidently':>11}")
    for column, value, _ in theirs:
        method, score = ours[str(column)]
        gaps.append(abs(score - float(value)))  # type: ignore[arg-type]
        print(f"{column!s:<8}{method:<14}{score:>10.4f}{float(value):>11.4f}")  # type: ignore[arg-type]
    print(f"largest difference: {max(gaps):.4f}")


def main() -> None:
    """Run the benchmark and print the figures side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=100_000)
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--round-rows", type=int, default=200_000, help="1000000 for the full")
    parser.add_argument("--skip-round", action="store_true")
    parser.add_argument("--round-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.round_child:
        _round_child(args.round_child)
        return
    os.sched_setaffinity(0, {0})
    ref, cur = _data(max(args.rows, args.round_rows), args.reference)
    round_figures = None if args.skip_round else _real_round(ref, cur, args.round_rows)
    cur = cur.slice(0, args.rows)
    with tempfile.TemporaryDirectory(prefix="loopml-bench-monitor-") as folder:
        ref_path, cur_path = Path(folder) / "reference.parquet", Path(folder) / "window.parquet"
        # Row groups of 100,000 rows, as the prediction log's appends are small files.
        pq.write_table(ref, ref_path, row_group_size=BATCH)
        pq.write_table(cur, cur_path, row_group_size=BATCH)
        ours = _loopml(ref, cur)
        streamed = _streaming(ref_path, cur_path)
        theirs = None if args.skip_evidently else _evidently(ref_path, cur_path, cur.column_names)
    shape = f"{args.rows:,} rows x {cur.num_columns} columns, reference {args.reference:,} rows"
    print(f"\nDrift of one window: {shape}; shifted: {', '.join(sorted(SHIFTED))}")
    print(f"{'':<34}{'loopml':>12}{'Evidently':>12}")
    their_s = float(theirs["seconds"]) if theirs else float("nan")  # type: ignore[arg-type]
    their_cpu = float(theirs["cpu_s"]) if theirs else float("nan")  # type: ignore[arg-type]
    print(f"{'window drift, s (one core)':<34}{ours['seconds']:>12.3f}{their_s:>12.2f}")
    print(f"{'  its CPU time, s':<34}{ours['cpu_s']:>12.3f}{their_cpu:>12.2f}")
    print(f"{'reference profile, s (once)':<34}{ours['reference_s']:>12.3f}{'':>12}")
    print(f"{'computation peak (tracemalloc), MB':<34}{ours['peak_mb']:>12.0f}")
    print(f"{'streamed from Parquet, s':<34}{streamed['seconds']:>12.3f}")
    print(f"{'streamed peak RSS, MB':<34}{streamed['peak_mb']:>12.0f}")
    print(f"{'  of which before the window, MB':<34}{streamed['before_mb']:>12.0f}")
    print(f"loopml drifted columns: {', '.join(ours['drifted'])}")  # type: ignore[arg-type]
    if theirs:
        values = theirs["values"]
        wall = their_s / float(ours["seconds"])  # type: ignore[arg-type]
        by_cpu = their_cpu / float(ours["cpu_s"])  # type: ignore[arg-type]
        print(f"speed-up: {wall:.0f}x wall, {by_cpu:.0f}x CPU time (target >= 20x)")
        _compare(ours["scores"], values)  # type: ignore[arg-type]
    if round_figures is not None:
        _print_round(round_figures)


if __name__ == "__main__":
    main()
