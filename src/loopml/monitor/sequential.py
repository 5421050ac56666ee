"""A sequential test over a window's rows, in the order they were answered: a shift that
begins in the middle of a busy window is seen within about 50 rows of its start, where the
window's own tests (``drift.py``), judging the whole window, see it only once the shifted
rows outweigh the unshifted ones before them.

Each row of each column gets the scores of ``onset.column_scores`` (a number's location
and spread in the reference's distribution, a category's rarity), clipped at ``CLIP`` and
standardised again over the reference, so that on unshifted rows each has mean 0 and
variance 1. Each score feeds two one-sided CUSUMs, one for a rise and one for a fall:
``S_t = max(0, S_(t-1) + d x_t - K)``. A one-standard-deviation shift of a normal column
moves its location score by 0.90, and ``K`` is half that.

**Mergeable.** Over a run of rows, a CUSUM that enters at ``s`` leaves at ``max(A, s + B)``
and peaks at ``max(P, s + Q)`` (A: the CUSUM from 0; B: the increments' sum; P, Q: their
largest values), and two runs compose in order (``merge``). So a window's state keeps four
numbers per statistic, added piece by piece as rows arrive, like its sketches.

**The false-alarm rate.** On unshifted rows, a CUSUM's increments ``d x - K`` have a
``theta > 0`` with ``E[exp(theta (d x - K))] = 1`` (found on the score's distribution over
the reference, ``onset.score_support``), and the chance that it passes ``h`` within ``n``
rows is at most ``n exp(-theta h)`` (Ville's inequality, once per row it could have started
from). Its threshold at ``n`` rows, in the dyadic block ``2^k <= n < 2^(k+1)``, is
``h(n) = (ln 2n + ln(S / alpha) + ln((k + 1)(k + 2))) / theta`` for ``S`` statistics sharing
``alpha``: summed over the blocks, the chance that any statistic passes its threshold at
any row of a window is at most ``alpha``, however many rows the window gets. A window's
verdict compares each peak with the threshold at the window's rows now (no lower than at
the row where the peak was reached), so it may be read at any round.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from loopml.monitor.onset import Support, column_scores, score_support
from loopml.monitor.sketch import ColumnReference

K = 0.45
CLIP = 3.0
_SCORES = {"numeric": ("location", "spread"), "categorical": ("rarity",)}
_DIRECTIONS = ("up", "down")


def _clipped(ref: ColumnReference) -> list[tuple[Support, float, float]]:
    """Each score's clipped support, with the mean and standard deviation that standardise
    it again (skipped: a score with no spread over the reference, which says nothing)."""
    out = []
    for values, weights in score_support(ref):
        clipped = np.clip(values, -CLIP, CLIP)
        mean = float(np.dot(weights, clipped))
        std = math.sqrt(float(np.dot(weights, (clipped - mean) ** 2)))
        out.append(((clipped, weights), mean, std))
    return out


@functools.lru_cache(maxsize=4096)
def _theta(values: bytes, weights: bytes) -> float:
    """The root ``theta > 0`` of ``E[exp(theta (x - K))] = 1`` over a support (``inf``
    where no increment is positive: that CUSUM never rises)."""
    x = np.frombuffer(values) - K
    w = np.frombuffer(weights)
    if not np.any((x > 0) & (w > 0)):
        return math.inf
    top = float(x[w > 0].max())

    def excess(theta: float) -> float:  # log E[exp(theta x)], stable
        return math.log(float(np.dot(w, np.exp(theta * (x - top))))) + theta * top

    low, high = 0.0, 1.0
    while excess(high) < 0:
        high *= 2
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if excess(middle) < 0 else (low, middle)
    return low


def statistics(features: Mapping[str, ColumnReference]) -> list[tuple[str, str, str, float]]:
    """The statistics a window over ``features`` keeps: column, score, direction and
    ``theta``, in state order (per column, each score up then down)."""
    out = []
    for name, ref in features.items():
        for kind, (support, mean, std) in zip(_SCORES[ref.kind], _clipped(ref), strict=False):
            if std < 1e-6:
                continue
            values = (support[0] - mean) / std
            for direction, sign in zip(_DIRECTIONS, (1.0, -1.0), strict=True):
                theta = _theta((sign * values).tobytes(), support[1].tobytes())
                out.append((name, kind, direction, theta))
    return out


def _runs(increments: np.ndarray) -> list[float]:
    """``[A, B, P, Q]`` of a run of CUSUM increments (see the module)."""
    sums = np.cumsum(increments)
    from_zero = sums - np.minimum(np.minimum.accumulate(sums), 0.0)
    return [float(from_zero[-1]), float(sums[-1]), float(from_zero.max()), float(sums.max())]


def piece(features: Mapping[str, ColumnReference], inputs: pa.Table) -> dict[str, Any]:
    """The sequential state of ``inputs`` (rows in the order they were answered)."""
    columns: dict[str, list[list[float]]] = {}
    for name, ref in features.items():
        if name not in inputs.column_names or not inputs.num_rows:
            continue
        runs = []
        scores = column_scores(ref, inputs[name])
        for raw, (_, mean, std) in zip(scores, _clipped(ref), strict=False):
            if std < 1e-6:
                continue
            x = (np.clip(raw, -CLIP, CLIP) - mean) / std
            runs += [_runs(x - K), _runs(-x - K)]
        columns[name] = runs
    return {"rows": inputs.num_rows, "columns": columns}


def _compose(a: list[float], b: list[float]) -> list[float]:
    a_end, a_sum, a_peak, a_top = a
    b_end, b_sum, b_peak, b_top = b
    return [
        max(b_end, a_end + b_sum),
        a_sum + b_sum,
        max(a_peak, b_peak, a_end + b_top),
        max(a_top, a_sum + b_top),
    ]


def merge(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two sequential states of one window, ``a`` the rows before ``b``'s."""
    if not a or not b:
        return a or b
    columns = dict(a["columns"])
    for name, runs in b["columns"].items():
        mine = columns.get(name)
        if mine is not None and len(mine) == len(runs):
            runs = [_compose(x, y) for x, y in zip(mine, runs, strict=True)]
        columns[name] = runs
    return {"rows": a["rows"] + b["rows"], "columns": columns}


def threshold(rows: int, statistics_count: int, alpha: float, theta: float) -> float:
    """The CUSUM threshold at ``rows`` rows (see the module)."""
    n = max(rows, 1)
    block = n.bit_length() - 1
    spent = math.log(2 * n) + math.log(statistics_count / alpha)
    return (spent + math.log((block + 1) * (block + 2))) / theta


def verdict(
    state: dict[str, Any] | None, features: Mapping[str, ColumnReference], alpha: float
) -> dict[str, Any] | None:
    """The statistic nearest its threshold (its peak over the threshold the largest) and
    whether it passed it: ``alarm``, ``column``, ``score``, ``direction``, ``cusum``,
    ``threshold`` and ``rows``; None before any row was scored."""
    if not state or not state["rows"] or alpha <= 0:
        return None
    kept = [s for s in statistics(features) if s[0] in state["columns"]]
    count = max(len(kept), 1)
    best: dict[str, Any] | None = None
    position: dict[str, int] = {}
    for name, score, direction, theta in kept:
        runs = state["columns"][name]
        index = position.get(name, 0)
        position[name] = index + 1
        if index >= len(runs) or not math.isfinite(theta):
            continue
        peak = runs[index][2]
        limit = threshold(int(state["rows"]), count, alpha, theta)
        if best is None or peak / limit > best["cusum"] / best["threshold"]:
            best = {"column": name, "score": score, "direction": direction}
            best.update(cusum=peak, threshold=limit, alarm=peak >= limit)
    if best is not None:
        best["rows"] = int(state["rows"])
    return best
