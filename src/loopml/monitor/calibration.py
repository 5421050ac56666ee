"""How calibrated a classifier's probabilities are, measured on its eval set, and the mapping
that corrects them before the CBPE estimate (``estimate``) sums them.

The table bins the eval rows by score: for two classes the positive class's score against
the observed positive rate, for more the predicted class's probability (the largest, the
confidence) against the observed accuracy. Bins hold equal counts of rows (``BINS`` of
them; rows with the same score are never split, so a model with few distinct scores gets
fewer bins): an over-confident model piles its rows near 1, where equal-width bins would
put most of them in one. The expected calibration error (ECE) is the row-weighted mean gap
between a bin's mean score and its observed rate.

The mapping is isotonic-like: the observed rates are made non-decreasing by pooling
adjacent violators (weighted by rows), then a score is interpolated linearly between the
bins' mean scores (the end bins' rates beyond them) and clipped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

BINS = 10
MIN_ROWS = 100
"""Fewer labelled eval rows than this give no table: ten bins of fewer than ten rows each
say more about chance than about the model."""


class CalibrationBin(BaseModel):
    """One bin of eval rows."""

    model_config = ConfigDict(frozen=True)

    lower: float = Field(description="The smallest score in the bin.")
    upper: float = Field(description="The largest score in the bin.")
    rows: int
    predicted: float = Field(description="The mean score of the bin's rows.")
    observed: float = Field(
        description="The share of the bin's rows that were positives (`positive`) or were "
        "predicted right (`confidence`)."
    )


class CalibrationTable(BaseModel):
    """A classifier's scores against its eval set's labels."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["positive", "confidence"] = Field(
        description="`positive`: two classes, the positive class's score against the "
        "observed positive rate; `confidence`: the predicted class's probability against "
        "the observed accuracy."
    )
    positive: str | None = Field(default=None, description="The positive class (two classes).")
    rows: int = Field(description="Labelled eval rows measured.")
    ece: float = Field(description="Expected calibration error over the bins.")
    bins: list[CalibrationBin]

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """``scores`` mapped to the rates the eval set observed (monotone in the score)."""
        means = np.asarray([b.predicted for b in self.bins], dtype=np.float64)
        rates = pooled([b.observed for b in self.bins], [b.rows for b in self.bins])
        mapped = np.interp(np.asarray(scores, dtype=np.float64), means, rates)
        return np.asarray(np.clip(mapped, 0.0, 1.0), dtype=np.float64)


def pooled(rates: Sequence[float], weights: Sequence[float]) -> np.ndarray:
    """``rates`` made non-decreasing by pooling adjacent violators (their weighted mean)."""
    blocks: list[list[float]] = []  # [mean, weight, members]
    for rate, weight in zip(rates, weights, strict=True):
        blocks.append([float(rate), float(weight), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            last = blocks.pop()
            before = blocks[-1]
            total = before[1] + last[1]
            before[0] = (before[0] * before[1] + last[0] * last[1]) / total if total else before[0]
            before[1], before[2] = total, before[2] + last[2]
    return np.asarray([b[0] for b in blocks for _ in range(int(b[2]))], dtype=np.float64)


def table_of(
    scores: np.ndarray,
    outcomes: np.ndarray,
    *,
    kind: Literal["positive", "confidence"],
    positive: str | None = None,
    bins: int = BINS,
) -> CalibrationTable:
    """The table of ``scores`` (one per row) against ``outcomes`` (1: positive, or right)."""
    values = np.asarray(scores, dtype=np.float64)
    hits = np.asarray(outcomes, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ranked, ranked_hits = values[order], hits[order]
    chunk = np.arange(len(ranked)) * bins // max(len(ranked), 1)
    # A score's rows all go where its first row went, so equal scores share one bin.
    chunk = chunk[np.searchsorted(ranked, ranked, side="left")]
    table: list[CalibrationBin] = []
    for index in np.unique(chunk):
        mask = chunk == index
        table.append(
            CalibrationBin(
                lower=float(ranked[mask][0]),
                upper=float(ranked[mask][-1]),
                rows=int(mask.sum()),
                predicted=float(ranked[mask].mean()),
                observed=float(ranked_hits[mask].mean()),
            )
        )
    rows = len(values)
    ece = sum(b.rows * abs(b.observed - b.predicted) for b in table) / rows if rows else 0.0
    return CalibrationTable(kind=kind, positive=positive, rows=rows, ece=ece, bins=table)


def calibration_table(
    probabilities: np.ndarray, labels: Sequence[str], classes: Sequence[str]
) -> CalibrationTable | None:
    """The table of a classifier's ``probabilities`` (``[rows, classes]``, in ``classes``
    order) against the eval set's ``labels`` (as text); ``None`` under ``MIN_ROWS`` rows."""
    proba = np.asarray(probabilities, dtype=np.float64)
    truth = np.asarray([str(label) for label in labels], dtype=object)
    if len(truth) < MIN_ROWS or len(classes) < 2:
        return None
    if proba.ndim != 2 or proba.shape != (len(truth), len(classes)):
        return None
    if len(classes) == 2:
        hits = truth == str(classes[1])
        return table_of(proba[:, 1], hits, kind="positive", positive=str(classes[1]))
    guessed = np.asarray([str(c) for c in classes], dtype=object)[proba.argmax(axis=1)]
    return table_of(proba.max(axis=1), guessed == truth, kind="confidence")
