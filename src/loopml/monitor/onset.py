"""When a drift began: the change point of a drifted window's rows, against the reference.

A window is judged drifted as a whole, but the rows it holds from before the shift are as
unshifted as the reference: a drift seen at 14:38 in the window of 14:00 began somewhere in
it, and the labels of the rows answered before then are labels of the old relation.
``change_point`` finds where. Each row of each drifted column gets scores whose mean over
the reference is 0 and variance 1: for a number, where its value falls in the reference's
distribution (its mid-CDF, centred: a shift of location) and how far from the middle (a
shift of spread); for a category, how rare its value is in the reference (unseen values
rarest). The change point is the row that splits the scores most likely: the rows before it
drawn as the reference's (mean 0, variance 1), the rows from it on with a mean and a
variance of their own, each score normal. Its mean alone would place a sharp shift early:
an unshifted row whose scores lie past halfway to the shifted rows' (a malignant tumour's
large measurements, just before a scanner reports them all ten times larger) fits a shifted
mean better than 0. Its variance tells them apart: the shifted rows' scores lie close
together, and such a row lies far from them. The last ``MIN_TAIL`` rows are never the
start: a few rows' variance is too noisy to say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from loopml.monitor.sketch import (
    CategoricalReference,
    ColumnReference,
    NumericReference,
    as_float,
    as_text,
)

MIN_TAIL = 20
# The least variance a tail's scores are given (a standard deviation of 0.1, a tenth of the
# reference's): a tail all past the reference's range has none, and its likelihood must stay
# finite.
VARIANCE_FLOOR = 1e-2
_FLOOR = 1e-3


def _standardised(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    mean = float(np.dot(weights, values))
    var = float(np.dot(weights, (values - mean) ** 2))
    return mean, math.sqrt(max(var, _FLOOR**2))


def _numeric_scores(ref: NumericReference, column: pa.Array | pa.ChunkedArray) -> list[np.ndarray]:
    values = as_float(column)
    if not ref.edges:
        return []
    edges = np.asarray(ref.edges, dtype=np.float64)
    cdf = np.asarray(ref.cdf, dtype=np.float64)
    if ref.exact:
        # Discrete: a value's mid-CDF (half its own mass below it), so the reference's own
        # values average 0.5; and the scores' moments from the reference's masses.
        mass = np.diff(cdf, prepend=0.0)
        mid = cdf - mass / 2
        u = np.interp(values, edges, mid, left=0.0, right=1.0)
        location = _standardised(mid - 0.5, mass)
        spread = _standardised(np.abs(mid - 0.5), mass)
    else:
        u = np.interp(values, edges, cdf, left=0.0, right=1.0)
        location, spread = (0.0, math.sqrt(1 / 12)), (0.25, math.sqrt(1 / 48))
    present = ~np.isnan(values)
    scores = []
    for raw, (mean, std) in ((u - 0.5, location), (np.abs(u - 0.5), spread)):
        scores.append(np.where(present, (raw - mean) / std, 0.0))
    return scores


def _categorical_scores(
    ref: CategoricalReference, column: pa.Array | pa.ChunkedArray
) -> list[np.ndarray]:
    total = ref.rows
    if total <= 0:
        return []
    counts = np.asarray([*ref.counts, ref.other], dtype=np.float64)
    shares = counts / total
    # An unseen value: rarer than anything the reference held (half a row of it).
    rarest = 0.5 / total
    surprise = -np.log(np.maximum(shares, rarest))
    mean, std = _standardised(surprise, shares)
    known = {value: float(surprise[i]) for i, value in enumerate(ref.values)}
    other = float(surprise[-1]) if ref.other else -math.log(rarest)
    texts = as_text(column).to_pylist()
    raw = np.asarray(
        [mean if text is None else known.get(text, other) for text in texts], dtype=np.float64
    )
    return [(raw - mean) / std]


def column_scores(ref: ColumnReference, column: pa.Array | pa.ChunkedArray) -> list[np.ndarray]:
    """A column's standardised scores, one array per kind of shift (see the module)."""
    if isinstance(ref, NumericReference):
        return _numeric_scores(ref, column)
    return _categorical_scores(ref, column)


Support = tuple[np.ndarray, np.ndarray]
"""A score's distribution over the reference: its values and their weights (summing to 1)."""
_GRID = 512


def score_support(ref: ColumnReference) -> list[Support]:
    """What each of ``column_scores``'s scores is on unshifted rows (drawn as the
    reference's), in the same order: a number's location and spread at the reference's
    distinct values (an exact reference) or on a fine grid of its CDF (uniform), a
    category's rarity at each kept value and "other"."""
    if isinstance(ref, NumericReference):
        if not ref.edges:
            return []
        if ref.exact:
            cdf = np.asarray(ref.cdf, dtype=np.float64)
            mass = np.diff(cdf, prepend=0.0)
            centred = cdf - mass / 2 - 0.5
        else:
            mass = np.full(_GRID, 1 / _GRID)
            centred = (np.arange(_GRID) + 0.5) / _GRID - 0.5
        supports = []
        for raw in (centred, np.abs(centred)):
            mean, std = _standardised(raw, mass)
            supports.append(((raw - mean) / std, mass))
        return supports
    if ref.rows <= 0:
        return []
    counts = np.asarray([*ref.counts, ref.other], dtype=np.float64)
    shares = counts / ref.rows
    surprise = -np.log(np.maximum(shares, 0.5 / ref.rows))
    mean, std = _standardised(surprise, shares)
    return [((surprise - mean) / std, shares)]


def change_point(scores: Sequence[np.ndarray]) -> int:
    """The index of the first shifted row (0 when every row looks shifted, or there are too
    few rows): the split whose negative log-likelihood, summed over the scores, is least,
    with the rows before it standard normal and those from it on normal with the tail's own
    mean and variance (floored at ``VARIANCE_FLOOR``). Summed, the columns that all moved at
    the same row agree on it, and one row's chance value in one column cannot pull the
    estimate."""
    series = [s for s in scores if s.size > MIN_TAIL]
    if not series:
        return 0
    n = series[0].size
    rows = np.arange(n, MIN_TAIL - 1, -1, dtype=np.float64)  # the tail's rows, per start
    cost = np.zeros(rows.size)
    for values in series:
        squares = values * values
        head = np.concatenate(([0.0], np.cumsum(squares)))[: rows.size] / 2
        sums = np.cumsum(values[::-1])[::-1][: rows.size]
        spread = np.cumsum(squares[::-1])[::-1][: rows.size] - sums * sums / rows
        spread = np.maximum(spread, 0.0)
        variance = np.maximum(spread / rows, VARIANCE_FLOOR)
        cost += head + spread / (2 * variance) + rows / 2 * np.log(variance)
    return int(np.argmin(cost))


def onset_index(references: Mapping[str, ColumnReference], inputs: pa.Table) -> int:
    """The change point of ``inputs`` (rows in the order they were answered) over the
    columns named in ``references``."""
    scores: list[np.ndarray] = []
    for name, ref in references.items():
        if name in inputs.column_names:
            scores += column_scores(ref, inputs[name])
    return change_point(scores)
