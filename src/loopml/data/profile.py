"""Column profiles: the statistics a snapshot records, and drift detection compares with.

Every column gets its type, non-null count and null share. Then by kind:

- numeric (integers, floats, decimals, durations): NaN and infinity counts; over the finite
  values min, max, mean, population std, the quantiles ``p01`` ... ``p99`` (linear
  interpolation) and a histogram of ``HISTOGRAM_BINS`` equal-width bins (edges and counts);
  integers also get their distinct count, and their top values when they have at most
  ``TOP_K`` distinct values (labels, codes);
- categorical (text, booleans): distinct count, the ``TOP_K`` most frequent values with their
  counts (ties by value, so the list is the same every time), and ``other`` for the rest;
  text values longer than ``MAX_CATEGORY_CHARS`` characters are recorded cut to that length;
- temporal (dates, times, timestamps): min and max as ISO 8601 text;
- other (binary, null): distinct count (binary) only.

Everything is vectorised (Arrow compute and NumPy); no Python loop runs per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.datasets import (
    HISTOGRAM_BINS,
    MAX_CATEGORY_CHARS,
    QUANTILES,
    TOP_K,
    ColumnProfile,
    DatasetProfile,
    Histogram,
    TopValue,
)


def profile_table(table: pa.Table) -> DatasetProfile:
    """The profile of every column of ``table`` (normalized, see ``data.canonical``)."""
    return DatasetProfile(
        rows=table.num_rows,
        columns=[
            profile_column(field.name, column)
            for field, column in zip(table.schema, table.columns, strict=True)
        ],
    )


def _kind(kind: pa.DataType) -> str:
    t = pa.types
    if t.is_integer(kind) or t.is_floating(kind) or t.is_decimal(kind) or t.is_duration(kind):
        return "numeric"
    if t.is_string(kind) or t.is_large_string(kind) or t.is_boolean(kind):
        return "categorical"
    if t.is_temporal(kind):
        return "temporal"
    return "other"


def profile_column(name: str, column: pa.ChunkedArray | pa.Array) -> ColumnProfile:
    """The profile of one column."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    rows = len(array)
    nulls = array.null_count
    base: dict[str, Any] = {
        "name": name,
        "type": str(array.type),
        "count": rows - nulls,
        "nulls": nulls,
        "null_share": nulls / rows if rows else 0.0,
    }
    kind = _kind(array.type)
    base["kind"] = kind
    present = pc.drop_null(array)
    if kind == "numeric":
        base.update(_numeric(present))
    elif kind == "categorical":
        base.update(_categorical(present))
    elif kind == "temporal":
        base.update(_temporal(present))
    elif not pa.types.is_null(array.type):
        base["distinct"] = _distinct(present)  # binary
    return ColumnProfile.model_validate(base)


def _distinct(present: pa.Array) -> int:
    return int(pc.count_distinct(present, mode="only_valid").as_py())


def _numeric(present: pa.Array) -> dict[str, Any]:
    kind = present.type
    if pa.types.is_duration(kind):
        present = present.view(pa.int64())
        kind = present.type
    # Unsafe: integers beyond 2**53 round (the exact min and max are taken separately).
    values = np.asarray(pc.cast(present, pa.float64(), safe=False).to_numpy(zero_copy_only=False))
    nan = np.isnan(values)
    finite = values[np.isfinite(values)]
    out: dict[str, Any] = {
        "nan": int(nan.sum()),
        "pos_inf": int(np.isposinf(values).sum()),
        "neg_inf": int(np.isneginf(values).sum()),
    }
    if pa.types.is_integer(kind):
        out["distinct"] = distinct = _distinct(present)
        if distinct <= TOP_K:
            out.update(_top(present))
    if finite.size == 0:
        return out
    if pa.types.is_integer(kind):
        # Exact, where float64 would round integers beyond 2**53.
        extremes = pc.min_max(present)
        out["min"], out["max"] = extremes["min"].as_py(), extremes["max"].as_py()
    else:
        out["min"], out["max"] = float(finite.min()), float(finite.max())
    counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
    out.update(
        mean=float(finite.mean()),
        std=float(finite.std()),
        quantiles={
            label: float(q)
            for (label, _), q in zip(
                QUANTILES, np.quantile(finite, [q for _, q in QUANTILES]), strict=True
            )
        },
        histogram=Histogram(edges=[float(e) for e in edges], counts=[int(c) for c in counts]),
    )
    return out


def _categorical(present: pa.Array) -> dict[str, Any]:
    return {"distinct": _distinct(present), **_top(present)}


def _top(present: pa.Array) -> dict[str, Any]:
    counted = pc.value_counts(present)
    frequencies = pa.table(
        {"value": counted.field("values"), "count": counted.field("counts")}
    ).sort_by([("count", "descending"), ("value", "ascending")])
    head = frequencies.slice(0, TOP_K)
    values = head.column("value")
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values = pc.utf8_slice_codeunits(values, 0, MAX_CATEGORY_CHARS)
    top = [
        TopValue(value=value, count=count)
        for value, count in zip(values.to_pylist(), head.column("count").to_pylist(), strict=True)
    ]
    return {"top": top, "other": len(present) - sum(t.count for t in top)}


def _temporal(present: pa.Array) -> dict[str, Any]:
    if len(present) == 0:
        return {}
    extremes = pc.min_max(present)
    return {"min": _iso(extremes["min"].as_py()), "max": _iso(extremes["max"].as_py())}


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
