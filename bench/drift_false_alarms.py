"""The drift alarm per hour of traffic: how often unshifted traffic raises drift within an
hour, and how many rows a one-standard-deviation shift of one column takes to be seen, at
1, 10 and 100 requests a second, judged as the monitor judges.

Each simulated hour is one window filled the monitor's way: every round (its 30 s
interval) the rows that arrived are reduced to sketches against the reference
(``sketch.reduce``) and to the sequential test's runs (``sequential.piece``), what
``piece_state`` stores, merged into the window's state (``merge_state``) and summarized
with the window's last summary (``summarize``); the hour
raised drift if any round's verdict (``dataset_drift``) did. Three rules in the same run:

- **every round** (``looks=1``, summarized without its last summary): the window judged
  afresh at every round at ``p_value``, as before issue 50;
- **looks** (``sequential_share=0``): judged again only once its rows grew by 10 %, at most
  128 times, the looks sharing ``p_value``, as before the sequential test;
- **looks + sequential** (the default ``DriftConfig``): the looks sharing half of
  ``p_value`` and the sequential test over the rows (``sequential.py``) the other half.

A last line per rate reads the sequential test alone after every row of a shift from
mid-hour (its delay in rows, without the rounds' 30 s steps).

The columns: three numeric (normal, lognormal, integer) and one categorical (12 values);
the reference: 5,000 training rows (Wasserstein and Jensen-Shannon are the figures, KS and
chi-square the p-values; ``--reference 800`` makes the p-values the figures). The shift moves
the normal column by one standard deviation from the window's first row, or from the
middle of the hour (then the window holds half an hour of unshifted rows before it).

    .venv/bin/python bench/drift_false_alarms.py                  # 2,000 hours a rate
    .venv/bin/python bench/drift_false_alarms.py --hours 200 --rates 1,10

It prints, per rate, the hours that raised drift under each rule (with a 95 % upper bound),
and the rows after the shift's start at which each rule first said drift. A benchmark, not a
test: ``tests/unit/monitor/test_drift_false_alarms.py`` holds the rule to its promise on
fixed hours.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats

from loopml.monitor import sequential
from loopml.monitor.drift import DriftConfig
from loopml.monitor.reference import Reference, profile_table
from loopml.monitor.sketch import reduce
from loopml.monitor.windows import empty_state, merge_state, summarize

INTERVAL_S = 30
CATEGORIES = [f"k{i}" for i in range(12)]
WEIGHTS = np.arange(12, 0, -1) / np.arange(12, 0, -1).sum()
RULES = {
    "every round": DriftConfig(looks=1, sequential_share=0),
    "looks": DriftConfig(sequential_share=0),
    "looks + sequential": DriftConfig(),
}
"""``every round`` is summarized without its last summary: judged afresh each round;
``looks`` spends all of ``p_value`` on the looks (before the sequential test), ``looks +
sequential`` (the default) half on each."""


def draw(rng: np.random.Generator, rows: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "normal": rng.normal(shift, 1, rows),
            "lognormal": rng.lognormal(0, 0.5, rows),
            "integer": rng.integers(0, 20, rows).astype(np.float64),
            "region": rng.choice(CATEGORIES, rows, p=WEIGHTS),
        }
    )


@functools.cache
def reference(rows: int) -> Reference:
    train = draw(np.random.default_rng(1), rows)
    kinds: Any = {"normal": "numeric", "lognormal": "numeric", "integer": "numeric"}
    profile = profile_table(
        pa.Table.from_pandas(train), {**kinds, "region": "categorical"}, task="classification"
    )
    return Reference(status="ready", source="training rows", profile=profile)


def hour(job: tuple[int, int, int, int | None]) -> dict[str, int | None]:
    """One window: the rows (after the shift's start, when there is one) at which each rule
    first said drift; ``None`` when it never did within the hour."""
    seed, rate, reference_rows, shift_at = job
    ref = reference(reference_rows)
    assert ref.profile is not None
    rng = np.random.default_rng(seed)
    per_round = rate * INTERVAL_S
    state = empty_state()
    summaries: dict[str, dict[str, Any] | None] = dict.fromkeys(RULES)
    first: dict[str, int | None] = dict.fromkeys(RULES)
    seen = 0
    for _ in range(3600 // INTERVAL_S):
        frame = draw(rng, per_round)
        if shift_at is not None:
            moved = np.arange(seen, seen + per_round) >= shift_at
            frame.loc[moved, "normal"] += 1.0
        piece = empty_state()
        piece["usage"]["rows"] = per_round
        inputs = pa.Table.from_pandas(frame, preserve_index=False)
        for name, column in ref.profile.features.items():
            piece["features"][name] = reduce(column, inputs[name]).model_dump()
        piece["sequential"] = sequential.piece(ref.profile.features, inputs)
        state = merge_state(state, piece)
        seen += per_round
        for rule, config in RULES.items():
            earlier = summaries[rule] if rule != "every round" else None
            summaries[rule] = summarize(state, ref, 3600.0, config, earlier)
            drift = summaries[rule]["drift"]  # type: ignore[index]
            if first[rule] is None and drift["dataset_drift"]:
                first[rule] = seen - (shift_at or 0)
        if all(v is not None for v in first.values()):
            break
    return first


def row_by_row(job: tuple[int, int, int]) -> int | None:
    """The sequential test alone, read after every row: half an hour of unshifted rows at
    ``rate``, then the shifted ones one at a time; the shifted rows it took (None: not
    within 600)."""
    seed, rate, reference_rows = job
    ref = reference(reference_rows)
    assert ref.profile is not None
    rng = np.random.default_rng(seed)
    before = pa.Table.from_pandas(draw(rng, rate * 1800), preserve_index=False)
    state = sequential.piece(ref.profile.features, before)
    after = draw(rng, 600)
    after["normal"] += 1.0
    rows = pa.Table.from_pandas(after, preserve_index=False)
    alpha = DriftConfig().sequential_level
    for row in range(rows.num_rows):
        state = sequential.merge(state, sequential.piece(ref.profile.features, rows.slice(row, 1)))
        found = sequential.verdict(state, ref.profile.features, alpha)
        if found is not None and found["alarm"]:
            return row + 1
    return None


def upper(alarms: int, hours: int) -> float:
    """The 95 % upper bound of the hourly rate (Clopper-Pearson)."""
    return float(stats.beta.ppf(0.95, alarms + 1, hours - alarms)) if hours else 1.0


def delays(found: list[dict[str, int | None]], rule: str) -> str:
    rows = [f[rule] for f in found]
    seen = sorted(r for r in rows if r is not None)
    missed = len(rows) - len(seen)
    if not seen:
        return f"never within the hour ({missed} of {len(rows)})"
    p95 = seen[min(len(seen) - 1, int(0.95 * len(seen)))]
    tail = f", missed {missed}" if missed else ""
    return f"median {statistics.median(seen):.0f}, p95 {p95}, max {seen[-1]}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=int, default=2000, help="unshifted hours a rate")
    parser.add_argument("--shifted", type=int, default=100, help="shifted hours a case")
    parser.add_argument("--rates", default="1,10,100", help="requests a second")
    parser.add_argument("--reference", type=int, default=5000, help="reference rows")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    print(
        f"drift per hour, {INTERVAL_S} s rounds, 4 columns, a {args.reference}-row reference, "
        f"p_value {DriftConfig().p_value}"
    )
    with ProcessPoolExecutor(args.workers) as pool:
        for rate in rates:
            started = time.perf_counter()
            jobs = [(seed, rate, args.reference, None) for seed in range(args.hours)]
            found = list(pool.map(hour, jobs, chunksize=16))
            line = [f"{rate:>4} req/s, {args.hours} unshifted hours:"]
            for rule in RULES:
                hit = [seed for seed, f in enumerate(found) if f[rule] is not None]
                rate_up = upper(len(hit), args.hours)
                line.append(
                    f"{rule}: {len(hit)} raised drift ({100 * len(hit) / args.hours:.2f} %, "
                    f"<= {100 * rate_up:.2f} % at 95 %){' seeds ' + str(hit[:12]) if hit else ''}"
                )
            print("  ".join(line), f"[{time.perf_counter() - started:.0f} s]", flush=True)
            half = rate * 1800
            for label, at in (("from the window's start", 0), ("from mid-hour", half)):
                cases = [(10_000 + s, rate, args.reference, at) for s in range(args.shifted)]
                shifted = list(pool.map(hour, cases, chunksize=4))
                said = "; ".join(f"{rule}: {delays(shifted, rule)}" for rule in RULES)
                print(f"       1-sd shift {label}, rows to drift: {said}", flush=True)
            cases = [(20_000 + s, rate, args.reference) for s in range(args.shifted)]
            alone = [{"row by row": r} for r in pool.map(row_by_row, cases, chunksize=4)]
            print(
                "       1-sd shift from mid-hour, the sequential test read after every row: "
                f"{delays(alone, 'row by row')}",
                flush=True,
            )


if __name__ == "__main__":
    main()
