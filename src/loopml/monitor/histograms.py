"""A column's two distributions side by side, for a picture: the reference's (from its
sketch) and a window's (from its counts against the same sketch), in the same bars.

A numeric reference keeps up to ~1,000 edges and a window a count per gap between them, so
the gaps are grouped into about ``BARS`` bars of equal width in value (snapped to edges: a
window's counts cannot be split inside a gap); an exact reference with few distinct values
gets a bar per value. Values above the training range get a bar of their own. A
categorical column shows its most frequent reference values and one bar for all the rest
(the reference's ``other`` and the window's unseen values among them).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from loopml.monitor.sketch import (
    CategoricalReference,
    CategoricalWindow,
    ColumnReference,
    ColumnWindow,
    NumericReference,
    NumericWindow,
)

BARS = 20


class Bin(BaseModel):
    """One bar: what it stands for, and the share of each side's values in it."""

    model_config = ConfigDict(frozen=True)

    label: str
    reference: float
    current: float
    current_rows: int


class Distributions(BaseModel):
    """A column's reference and current distributions over the same bars."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["numeric", "categorical"]
    reference_rows: int
    current_rows: int
    bins: list[Bin]


def _number(value: float) -> str:
    return f"{value:.4g}"


def _groups(reference: NumericReference, bars: int) -> list[tuple[int, int]]:
    """Runs of consecutive gaps (first, last index; gap ``g`` holds the values above edge
    ``g - 1`` up to edge ``g``) making about ``bars`` bars of equal width."""
    edges = np.asarray(reference.edges)
    k = edges.size
    if k <= bars:
        return [(g, g) for g in range(k)]
    targets = edges[0] + (edges[-1] - edges[0]) * np.arange(1, bars + 1) / bars
    ends = np.unique(np.clip(np.searchsorted(edges, targets, side="left"), 0, k - 1))
    ends[-1] = k - 1
    ends = np.unique(ends)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def _numeric(ref: NumericReference, win: NumericWindow | None, bars: int) -> Distributions:
    edges, cdf = ref.edges, np.asarray(ref.cdf)
    gaps = np.asarray(win.gaps if win and win.gaps else [0] * (len(edges) + 1), dtype=np.int64)
    rows = win.rows if win else 0
    made = []
    for first, last in _groups(ref, bars):
        share = cdf[last] - (cdf[first - 1] if first else 0.0)
        count = int(gaps[first : last + 1].sum())
        if first == last and ref.exact:
            label = _number(edges[last]) if first else f"{_number(edges[0])} or below"
        else:
            low = edges[first - 1] if first else edges[0]
            label = f"{_number(low)} to {_number(edges[last])}"
        current = _share(count, rows)
        made.append(Bin(label=label, reference=float(share), current=current, current_rows=count))
    above = int(gaps[-1]) if gaps.size else 0
    if above and edges:
        made.append(
            Bin(
                label=f"above {_number(edges[-1])} (outside training)",
                reference=0.0,
                current=_share(above, rows),
                current_rows=above,
            )
        )
    return Distributions(kind="numeric", reference_rows=ref.rows, current_rows=rows, bins=made)


def _categorical(
    ref: CategoricalReference, win: CategoricalWindow | None, bars: int
) -> Distributions:
    counts = list(win.counts) if win and win.counts else [0] * len(ref.values)
    rows = win.rows if win else 0
    shown = min(len(ref.values), bars - 1)
    made = [
        Bin(
            label=ref.values[i],
            reference=_share(ref.counts[i], ref.rows),
            current=_share(counts[i], rows),
            current_rows=counts[i],
        )
        for i in range(shown)
    ]
    rest_ref = ref.other + sum(ref.counts[shown:])
    rest_cur = (win.unseen if win else 0) + sum(counts[shown:])
    if rest_ref or rest_cur:
        made.append(
            Bin(
                label="all other values",
                reference=_share(rest_ref, ref.rows),
                current=_share(rest_cur, rows),
                current_rows=rest_cur,
            )
        )
    return Distributions(kind="categorical", reference_rows=ref.rows, current_rows=rows, bins=made)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def distributions(
    reference: ColumnReference, window: ColumnWindow | None, bars: int = BARS
) -> Distributions:
    """The reference's and the window's distributions of one column in about ``bars`` bars
    (``window`` ``None``: no value seen yet, every current share 0)."""
    if isinstance(reference, NumericReference):
        if reference.rows == 0 or not reference.edges:
            return Distributions(kind="numeric", reference_rows=0, current_rows=0, bins=[])
        return _numeric(reference, window if isinstance(window, NumericWindow) else None, bars)
    current = window if isinstance(window, CategoricalWindow) else None
    return _categorical(reference, current, bars)
