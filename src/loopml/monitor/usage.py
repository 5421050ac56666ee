"""Usage of a window, as mergeable counts: requests, rows, errors by status, latency and
batch-size histograms, rows per role, requests per caller. Built from prediction-log rows
(Arrow), vectorised; errors and callers come from the gateway's counts (``engine``).

A window keeps at most ``MAX_CALLERS`` callers: adding two windows keeps the busiest and
folds the rest into ``other``.

Latency percentiles come from a histogram of ``LATENCY_EDGES_MS`` (20 log-spaced bins per
decade from 0.01 ms to 100 s: a percentile is within about 12 % of the true value).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LATENCY_EDGES_MS = np.geomspace(0.01, 100_000.0, 141)
BATCH_EDGES = np.array([1, 2, 5, 10, 50, 100, 1000, 10_000, np.inf])
MAX_CALLERS = 100
TOP_CALLERS = 10
OTHER = "other"


def empty_usage() -> dict[str, Any]:
    """The counts of a window with nothing in it."""
    return {
        "requests": 0,
        "rows": 0,
        "errors": {},
        "roles": {},
        "latency": [0] * (LATENCY_EDGES_MS.size + 1),
        "batch": [0] * (BATCH_EDGES.size - 1),
        "batch_max": 0,
        "callers": {},
    }


def usage_of(rows: pa.Table) -> dict[str, Any]:
    """The usage counts of prediction-log ``rows`` (one window, one model version)."""
    usage = empty_usage()
    usage["rows"] = rows.num_rows
    roles = pc.value_counts(pc.fill_null(rows["role"], "primary"))
    usage["roles"] = {
        str(v): int(c)
        for v, c in zip(
            roles.field("values").to_pylist(), roles.field("counts").to_pylist(), strict=True
        )
    }
    first = pc.equal(rows["row_index"], 0)
    latency = np.asarray(pc.filter(rows["latency_ms"], first).to_numpy(zero_copy_only=False))
    latency = latency[~np.isnan(latency)]
    usage["requests"] = int(pc.sum(first).as_py() or 0)
    where = np.searchsorted(LATENCY_EDGES_MS, latency, side="right")
    usage["latency"] = np.bincount(where, minlength=LATENCY_EDGES_MS.size + 1).tolist()
    sizes = rows.group_by("inference_id").aggregate([("row_index", "max")])
    batch = np.asarray(sizes["row_index_max"].to_numpy(zero_copy_only=False)) + 1
    if batch.size:
        counts, _ = np.histogram(batch, bins=BATCH_EDGES)
        usage["batch"] = counts.tolist()
        usage["batch_max"] = int(batch.max())
    return usage


def merge_usage(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two windows' usage counts added."""
    return {
        "requests": a["requests"] + b["requests"],
        "rows": a["rows"] + b["rows"],
        "errors": _add_map(a["errors"], b["errors"]),
        "roles": _add_map(a["roles"], b["roles"]),
        "latency": [x + y for x, y in zip(a["latency"], b["latency"], strict=True)],
        "batch": [x + y for x, y in zip(a["batch"], b["batch"], strict=True)],
        "batch_max": max(a["batch_max"], b["batch_max"]),
        # Windows stored before callers were counted have no "callers".
        "callers": _capped(_add_map(a.get("callers", {}), b.get("callers", {}))),
    }


def _capped(callers: dict[str, int]) -> dict[str, int]:
    if len(callers) <= MAX_CALLERS:
        return callers
    rest = callers.pop(OTHER, 0)
    ranked = sorted(callers.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(ranked[: MAX_CALLERS - 1])
    kept[OTHER] = rest + sum(count for _, count in ranked[MAX_CALLERS - 1 :])
    return kept


def _add_map(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, 0) + value
    return out


def _percentile(histogram: np.ndarray, q: float) -> float | None:
    total = histogram.sum()
    if total == 0:
        return None
    rank = q * total
    cumulative = np.cumsum(histogram)
    index = int(np.searchsorted(cumulative, rank, side="left"))
    edges = np.concatenate([[0.0], LATENCY_EDGES_MS, [LATENCY_EDGES_MS[-1]]])
    low, high = edges[index], edges[index + 1]
    before = cumulative[index - 1] if index else 0
    inside = histogram[index]
    share = (rank - before) / inside if inside else 0.0
    return float(low + (high - low) * share)


def usage_summary(usage: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The figures of a window's usage: rates, error share, latency percentiles, batches."""
    histogram = np.asarray(usage["latency"], dtype=np.float64)
    errors = sum(usage["errors"].values())
    total = usage["requests"] + errors
    batches = usage["batch"]
    return {
        "requests": total,
        "answered": usage["requests"],
        "rows": usage["rows"],
        "errors": errors,
        "errors_by_status": dict(usage["errors"]),
        "error_rate": errors / total if total else 0.0,
        "requests_per_s": total / seconds if seconds > 0 else 0.0,
        "latency_p50_ms": _percentile(histogram, 0.50),
        "latency_p95_ms": _percentile(histogram, 0.95),
        "latency_p99_ms": _percentile(histogram, 0.99),
        "batch_mean": usage["rows"] / usage["requests"] if usage["requests"] else 0.0,
        "batch_max": usage["batch_max"],
        "batch_histogram": {
            _bucket(BATCH_EDGES[i], BATCH_EDGES[i + 1]): n for i, n in enumerate(batches) if n
        },
        "roles": dict(usage["roles"]),
        "callers": _top(usage.get("callers", {})),
    }


def _top(callers: dict[str, int]) -> dict[str, int]:
    """The ``TOP_CALLERS`` busiest callers, busiest first, the rest summed as ``other``."""
    ranked = sorted(callers.items(), key=lambda item: (item[0] == OTHER, -item[1], item[0]))
    if len(ranked) <= TOP_CALLERS:
        return dict(ranked)
    top = dict(ranked[:TOP_CALLERS])
    top[OTHER] = top.get(OTHER, 0) + sum(count for _, count in ranked[TOP_CALLERS:])
    return top


def _bucket(low: float, high: float) -> str:
    return f">={int(low)}" if not np.isfinite(high) else f"{int(low)}-{int(high) - 1}"
