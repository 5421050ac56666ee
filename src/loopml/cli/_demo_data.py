"""The demo's data and its two scenarios, built so the story happens every time.

The breast-cancer data (569 rows, 30 features) is shuffled once and cut in three:

- the first 150 rows train the champion;
- the next 119 rows are live traffic, whose true labels come back as feedback (in
  ``promote``, once the new scanner is in use, the same rows as it measures them);
- the last 300 rows arrive later as a new batch, which depends on the scenario:

``promote``: a new scanner reports every measurement ten times larger (a unit change). The
champion never saw such values, so on the retrain's eval set (two thirds of it from the new
scanner) it falls to about 0.55-0.8 roc_auc, while the challenger, trained on both kinds of
rows, scores about 0.95-1.0: the gate's "beat the champion by 0.01" passes by a wide margin.
``refuse``: the batch's labels were scrambled by a broken export (a real permutation of its
labels). A model trained on them is worse, and the eval set holds them too, so the
challenger's roc_auc stays far below the policy's 0.90 floor (about 0.53-0.72) and the gate
refuses it, whatever the champion scores there (usually more than the challenger).

The margins were measured over eight shuffles with LightGBM, random forest, extra trees and
logistic regression, the estimators AutoML picks from: the smallest win of ``promote``'s
challenger was 0.17, the best roc_auc of ``refuse``'s challenger 0.72.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROJECT = "demo"
TABLE = "patients"
MODEL = "cancer"
DEPLOYMENT = "cancer-api"
TARGET = "malignant"
TRIGGER = "retrain-on-rows"
FIRST_ROWS = 150
LIVE_ROWS = 119
SCENARIOS = ("promote", "refuse")
CONTRACT: dict[str, Any] = {
    "columns": {
        TARGET: {"allowed": [0, 1]},
        "mean_radius": {"min": 0},
        "mean_area": {"min": 0},
    },
    "rows": {"min": 100},
}
"""What the loop's ``validate`` step checks each snapshot of the table against."""

POLICY_FLOOR = 0.90
POLICY_MARGIN = 0.01
POLICY: dict[str, Any] = {
    "thresholds": [{"metric": "roc_auc", "min": POLICY_FLOOR}],
    "must_beat": "champion",
    "min_delta": POLICY_MARGIN,
}
"""The model's gate policy: a floor, and a clear win over the champion on its eval set."""


@dataclass(frozen=True)
class Batches:
    """The three parts of the data, as records (see the module docstring), and the live
    traffic once the new batch arrived (``after``: the new scanner's measurements of the
    live rows in ``promote``, the same rows in ``refuse``)."""

    first: list[dict[str, Any]]
    live: list[dict[str, Any]]
    new: list[dict[str, Any]]
    story: str
    after: list[dict[str, Any]]


def rows(seed: int = 0) -> list[dict[str, Any]]:
    """The breast-cancer data set as records, shuffled; ``malignant`` is the label."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    frame = frame.rename(columns={"target": TARGET})
    # scikit-learn codes benign as 1: the label the demo predicts is "is it malignant".
    frame[TARGET] = 1 - frame[TARGET]
    order = np.random.default_rng(seed).permutation(len(frame))
    records: list[dict[str, Any]] = frame.iloc[order].to_dict(orient="records")
    return records


def new_scanner(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``batch`` as a scanner that reports every measurement ten times larger sends it."""
    return [{k: (v if k == TARGET else float(v) * 10) for k, v in r.items()} for r in batch]


def scrambled_labels(batch: list[dict[str, Any]], seed: int = 1) -> list[dict[str, Any]]:
    """``batch`` with its labels permuted, as a broken export that mixes up rows sends it."""
    import numpy as np

    labels = np.random.default_rng(seed).permutation([int(r[TARGET]) for r in batch])
    return [{**r, TARGET: int(label)} for r, label in zip(batch, labels, strict=True)]


def batches(scenario: str) -> Batches:
    """The demo's data for ``scenario`` (``promote`` or ``refuse``)."""
    everything = rows()
    first = everything[:FIRST_ROWS]
    live = everything[FIRST_ROWS : FIRST_ROWS + LIVE_ROWS]
    later = everything[FIRST_ROWS + LIVE_ROWS :]
    if scenario == "refuse":
        story = "labels scrambled by a broken export (the features are fine)"
        return Batches(first, live, scrambled_labels(later), story, live)
    story = "from a new scanner that reports every measurement 10x larger"
    return Batches(first, live, new_scanner(later), story, new_scanner(live))


def features(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its label: what a client sends to the deployment."""
    return {k: v for k, v in row.items() if k != TARGET}
