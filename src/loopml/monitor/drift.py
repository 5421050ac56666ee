"""Drift statistics of a window against its reference, from their sketches (``sketch``).

Every column gets its population stability index (PSI, over ten buckets of the reference's
deciles) and one test that decides whether it drifted, chosen as Evidently's defaults do by
the reference's size (``DriftConfig``):

| column | reference rows <= 1,000 | more |
|---|---|---|
| numeric | two-sample KS, drift when p < 0.05 | Wasserstein / reference std >= 0.1 |
| categorical | chi-square (2 x k table), p < 0.05 | Jensen-Shannon distance >= 0.1 |

The input drifted (``dataset_drift``) when at least ``drift_share`` (0.5) of its columns did.
The KS statistic is exact when the reference kept every distinct value (``exact``); the
Wasserstein distance integrates ``|F_ref - F_cur|`` with both CDFs linear inside a gap
between edges (exact tails beyond them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from loopml.monitor.sketch import (
    CategoricalReference,
    CategoricalWindow,
    ColumnReference,
    ColumnWindow,
    NumericReference,
    NumericWindow,
)

Method = Literal["auto", "ks", "wasserstein", "psi", "chi2", "js"]
PSI_BUCKETS = 10
_EPS = 1e-4
_MIN_STD = 1e-3


class DriftConfig(BaseModel):
    """How a column's drift is decided (Evidently-like defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    small_reference: int = Field(
        default=1000, ge=1, description="Reference rows up to which KS / chi-square decide."
    )
    numeric_method: Method = Field(default="auto", description="auto, ks, wasserstein or psi.")
    categorical_method: Method = Field(default="auto", description="auto, chi2, js or psi.")
    p_value: float = Field(default=0.05, gt=0, lt=1, description="KS / chi-square threshold.")
    distance: float = Field(default=0.1, gt=0, description="Wasserstein / JS threshold.")
    psi: float = Field(default=0.1, gt=0, description="PSI threshold when PSI decides.")
    drift_share: float = Field(
        default=0.5, gt=0, le=1, description="Share of drifted columns that makes input drift."
    )
    min_rows: int = Field(default=30, ge=1, description="Fewer current rows: not judged.")


class ColumnDrift(BaseModel):
    """One column's drift in one window."""

    model_config = ConfigDict(frozen=True)

    column: str
    kind: Literal["numeric", "categorical"]
    method: str = Field(description="The test that decided: ks, wasserstein, chi2, js or psi.")
    score: float = Field(description="Its statistic: a p-value or a distance.")
    threshold: float
    drifted: bool
    psi: float
    rows: int = Field(description="Current non-missing values.")
    missing_share: float
    reference_missing_share: float
    out_of_range: int = Field(description="Numeric values outside the training range.")
    unseen: int = Field(
        description="Categorical values not among the reference's kept values (new "
        "categories, or ones the reference folded into 'other')."
    )
    judged: bool = Field(description="False when too few rows were seen to decide.")


class DatasetDrift(BaseModel):
    """Every column of a window, and whether the input as a whole drifted."""

    model_config = ConfigDict(frozen=True)

    columns: list[ColumnDrift]
    drifted_columns: int
    judged_columns: int
    share: float
    dataset_drift: bool


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _psi(ref: np.ndarray, cur: np.ndarray) -> float:
    ref = np.clip(ref, _EPS, None)
    cur = np.clip(cur, _EPS, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _cur_cdf(window: NumericWindow) -> np.ndarray:
    """Share of current values at or below each edge."""
    gaps = np.asarray(window.gaps, dtype=np.float64)
    return np.cumsum(gaps[:-1]) / max(window.rows, 1)


def _numeric_psi(ref: NumericReference, cur_cdf: np.ndarray) -> float:
    ref_cdf = np.asarray(ref.cdf)
    cut = np.unique(np.searchsorted(ref_cdf, np.arange(1, PSI_BUCKETS) / PSI_BUCKETS - 1e-12))
    cut = cut[cut < ref_cdf.size - 1]
    ref_at = np.concatenate([[0.0], ref_cdf[cut], [1.0]])
    cur_at = np.concatenate([[0.0], cur_cdf[cut], [1.0]])
    return _psi(np.diff(ref_at), np.diff(cur_at))


def ks_statistic(ref: NumericReference, window: NumericWindow) -> float:
    """The largest gap between the two CDFs, at each edge and just before it."""
    ref_cdf = np.asarray(ref.cdf)
    cur_cdf = _cur_cdf(window)
    gap = np.abs(ref_cdf - cur_cdf)
    if window.equal:
        ref_before = np.concatenate([[0.0], ref_cdf[:-1]])
        cur_before = cur_cdf - np.asarray(window.equal) / max(window.rows, 1)
        gap = np.maximum(gap, np.abs(ref_before - cur_before))
    return float(gap.max()) if gap.size else 0.0


def ks_p_value(statistic: float, n: int, m: int) -> float:
    """The two-sample KS p-value (``scipy.stats.ks_2samp``'s asymptotic method)."""
    from scipy import stats  # about 1 s to import: paid by the first drift check, not by startup

    en = n * m / (n + m)
    return float(np.clip(stats.kstwo.sf(statistic, max(round(en), 1)), 0.0, 1.0))


def wasserstein(ref: NumericReference, window: NumericWindow) -> float:
    """The Wasserstein-1 distance between the reference and the window (unnormalised)."""
    edges = np.asarray(ref.edges)
    rows = max(window.rows, 1)
    tails = (window.below_sum + window.above_sum) / rows
    if edges.size < 2:
        return tails
    ref_cdf = np.asarray(ref.cdf)
    cur_cdf = _cur_cdf(window)
    width = np.diff(edges)
    if ref.exact:  # F_ref steps at each edge: constant inside a gap
        r0 = r1 = ref_cdf[:-1]
    else:
        r0, r1 = ref_cdf[:-1], ref_cdf[1:]
    c0 = cur_cdf[:-1]
    inside = np.asarray(window.gaps[1:-1], dtype=np.float64)
    if window.equal:
        inside = inside - np.asarray(window.equal[1:], dtype=np.float64)
    c1 = c0 + inside / rows
    d0, d1 = r0 - c0, r1 - c1
    same = d0 * d1 >= 0
    spread = np.abs(d1 - d0)
    crossing = (d0**2 + d1**2) / (2 * np.where(spread > 0, spread, 1.0))
    area = np.where(same, np.abs(d0 + d1) / 2, crossing) * width
    return float(area.sum() + tails)


def _numeric(name: str, ref: NumericReference, win: NumericWindow, cfg: DriftConfig) -> ColumnDrift:
    method = cfg.numeric_method
    if method == "auto":
        method = "ks" if ref.rows <= cfg.small_reference else "wasserstein"
    judged = win.rows >= cfg.min_rows and ref.rows > 0
    cur_cdf = _cur_cdf(win) if ref.rows and win.rows else np.zeros(len(ref.edges))
    psi = _numeric_psi(ref, cur_cdf) if judged else 0.0
    if not judged:
        score, threshold, drifted = 0.0, 0.0, False
    elif method == "ks":
        score = ks_p_value(ks_statistic(ref, win), ref.rows, win.rows)
        threshold, drifted = cfg.p_value, score < cfg.p_value
    elif method == "wasserstein":
        score = wasserstein(ref, win) / max(ref.std, _MIN_STD)
        threshold, drifted = cfg.distance, score >= cfg.distance
    else:
        score, threshold, drifted = psi, cfg.psi, psi >= cfg.psi
    return ColumnDrift(
        column=name,
        kind="numeric",
        method=str(method),
        score=_finite(score),
        threshold=threshold,
        drifted=bool(drifted),
        psi=_finite(psi),
        rows=win.rows,
        missing_share=_share(win.missing, win.rows + win.missing),
        reference_missing_share=_share(ref.missing, ref.rows + ref.missing),
        out_of_range=win.below + win.above,
        unseen=0,
        judged=judged,
    )


def _categorical(
    name: str, ref: CategoricalReference, win: CategoricalWindow, cfg: DriftConfig
) -> ColumnDrift:
    method = cfg.categorical_method
    if method == "auto":
        method = "chi2" if ref.rows <= cfg.small_reference else "js"
    judged = win.rows >= cfg.min_rows and ref.rows > 0
    ref_counts = np.asarray([*ref.counts, ref.other], dtype=np.float64)
    cur_counts = np.asarray([*(win.counts or [0] * len(ref.counts)), win.unseen], dtype=np.float64)
    ref_p = ref_counts / max(ref_counts.sum(), 1)
    cur_p = cur_counts / max(cur_counts.sum(), 1)
    psi = _psi(ref_p, cur_p) if judged else 0.0
    if not judged:
        score, threshold, drifted = 0.0, 0.0, False
    elif method == "chi2":
        keep = (ref_counts + cur_counts) > 0
        table = np.vstack([ref_counts[keep], cur_counts[keep]])
        from scipy import stats

        score = 1.0 if table.shape[1] < 2 else float(stats.chi2_contingency(table)[1])
        threshold, drifted = cfg.p_value, score < cfg.p_value
    elif method == "js":
        from scipy.spatial import distance

        score = float(distance.jensenshannon(ref_p, cur_p))
        threshold, drifted = cfg.distance, score >= cfg.distance
    else:
        score, threshold, drifted = psi, cfg.psi, psi >= cfg.psi
    return ColumnDrift(
        column=name,
        kind="categorical",
        method=str(method),
        score=_finite(score),
        threshold=threshold,
        drifted=bool(drifted),
        psi=_finite(psi),
        rows=win.rows,
        missing_share=_share(win.missing, win.rows + win.missing),
        reference_missing_share=_share(ref.missing, ref.rows + ref.missing),
        out_of_range=0,
        unseen=win.unseen,
        judged=judged,
    )


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def column_drift(
    name: str, reference: ColumnReference, window: ColumnWindow, config: DriftConfig
) -> ColumnDrift:
    """One column's drift (the reference and window must be of the same kind)."""
    if isinstance(reference, NumericReference) and isinstance(window, NumericWindow):
        return _numeric(name, reference, window, config)
    if isinstance(reference, CategoricalReference) and isinstance(window, CategoricalWindow):
        return _categorical(name, reference, window, config)
    raise TypeError(f"column {name!r}: a {reference.kind} reference with a {window.kind} window")


def dataset_drift(
    references: Mapping[str, ColumnReference],
    windows: Mapping[str, ColumnWindow],
    config: DriftConfig | None = None,
) -> DatasetDrift:
    """Every column's drift, and the input's (columns without a window are skipped)."""
    cfg = config or DriftConfig()
    columns = [
        column_drift(name, ref, windows[name], cfg)
        for name, ref in references.items()
        if name in windows
    ]
    judged = [c for c in columns if c.judged]
    drifted = sum(c.drifted for c in judged)
    share = _share(drifted, len(judged))
    return DatasetDrift(
        columns=columns,
        drifted_columns=drifted,
        judged_columns=len(judged),
        share=share,
        dataset_drift=bool(judged) and share >= cfg.drift_share,
    )
