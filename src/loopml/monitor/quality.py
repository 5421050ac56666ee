"""Live quality of a window from the labels joined to its predictions, as mergeable counts.

Classification: accuracy, macro F1 (per-class true positives, false positives and false
negatives), log loss (from the logged probability of the true class, clipped at 1e-15),
and for two classes the ROC AUC from score histograms of ``AUC_BINS`` bins of the second
class's probability (the positive one, as scikit-learn orders classes). Regression: RMSE,
MAE and R2 from sums. Both: how many labels, and their delay (label received - prediction).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

AUC_BINS = 100
_CLIP = 1e-15
_ADDITIVE = (
    "labels",
    "delay_sum_s",
    "correct",
    "logloss_sum",
    "logloss_n",
    "sse",
    "sae",
    "sum_y",
    "sum_y2",
    "numeric",
)


def empty_quality() -> dict[str, Any]:
    """The counts of a window with no labels."""
    return {
        "labels": 0,
        "delay_sum_s": 0.0,
        "delay_max_s": 0.0,
        "correct": 0,
        "classes": {},
        "logloss_sum": 0.0,
        "logloss_n": 0,
        "auc_pos": [0] * AUC_BINS,
        "auc_neg": [0] * AUC_BINS,
        "positive": None,
        "sse": 0.0,
        "sae": 0.0,
        "sum_y": 0.0,
        "sum_y2": 0.0,
        "numeric": 0,
    }


def quality_of(joined: pa.Table) -> dict[str, Any]:
    """The counts of ``joined``: prediction-log rows with ``label``, ``label_value`` and
    ``received_at`` (one window, one model version)."""
    q = empty_quality()
    q["labels"] = joined.num_rows
    delay = pc.divide(
        pc.cast(pc.subtract(joined["received_at"], joined["ts"]), pa.int64()), 1_000_000.0
    )
    delays = np.clip(np.asarray(delay.to_numpy(zero_copy_only=False), dtype=float), 0, None)
    q["delay_sum_s"] = float(delays.sum())
    q["delay_max_s"] = float(delays.max()) if delays.size else 0.0
    labels = [str(v) for v in joined["label"].to_pylist()]
    predicted = [str(v) for v in joined["prediction"].to_pylist()]
    classified = pc.any(pc.is_valid(joined["probabilities"])).as_py()
    if classified:
        _classification(q, labels, predicted, joined["probabilities"].to_pylist())
    else:
        _regression(q, joined)
    return q


def _classification(
    q: dict[str, Any], labels: list[str], predicted: list[str], probabilities: list[Any]
) -> None:
    classes: dict[str, list[int]] = {}
    for label, guess in zip(labels, predicted, strict=True):
        classes.setdefault(label, [0, 0, 0])
        classes.setdefault(guess, [0, 0, 0])
        if label == guess:
            q["correct"] += 1
            classes[label][0] += 1
        else:
            classes[guess][1] += 1
            classes[label][2] += 1
    q["classes"] = classes
    pos_scores: list[float] = []
    neg_scores: list[float] = []
    for label, text in zip(labels, probabilities, strict=True):
        if not text:
            continue
        scores = json.loads(text)
        if not isinstance(scores, dict):
            continue
        p = scores.get(label)
        if isinstance(p, int | float):
            q["logloss_sum"] -= math.log(min(max(float(p), _CLIP), 1.0))
            q["logloss_n"] += 1
        if len(scores) == 2:
            positive = list(scores)[1]
            q["positive"] = positive
            score = scores[positive]
            (pos_scores if label == positive else neg_scores).append(float(score))
    q["auc_pos"] = _histogram(pos_scores)
    q["auc_neg"] = _histogram(neg_scores)


def _histogram(scores: list[float]) -> list[int]:
    counts, _ = np.histogram(np.asarray(scores, dtype=float), bins=AUC_BINS, range=(0.0, 1.0))
    return [int(c) for c in counts]


def _regression(q: dict[str, Any], joined: pa.Table) -> None:
    y = np.asarray(joined["label_value"].to_numpy(zero_copy_only=False), dtype=float)
    p = np.asarray(joined["prediction_value"].to_numpy(zero_copy_only=False), dtype=float)
    ok = ~(np.isnan(y) | np.isnan(p))
    y, p = y[ok], p[ok]
    q["numeric"] = int(y.size)
    q["sse"] = float(((y - p) ** 2).sum())
    q["sae"] = float(np.abs(y - p).sum())
    q["sum_y"] = float(y.sum())
    q["sum_y2"] = float((y**2).sum())


def merge_quality(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two windows' quality counts added."""
    classes = {k: list(v) for k, v in a["classes"].items()}
    for key, counts in b["classes"].items():
        mine = classes.setdefault(key, [0, 0, 0])
        classes[key] = [x + y for x, y in zip(mine, counts, strict=True)]
    out = {key: a[key] + b[key] for key in _ADDITIVE}
    out["delay_max_s"] = max(a["delay_max_s"], b["delay_max_s"])
    out["classes"] = classes
    out["auc_pos"] = [x + y for x, y in zip(a["auc_pos"], b["auc_pos"], strict=True)]
    out["auc_neg"] = [x + y for x, y in zip(a["auc_neg"], b["auc_neg"], strict=True)]
    out["positive"] = b["positive"] or a["positive"]
    return out


def scaled_quality(q: dict[str, Any], sign: int) -> dict[str, Any]:
    """``q``'s counts times ``sign``: with ``-1``, what adding takes a replaced label out
    of a window (its largest delay stays; a maximum cannot be taken back)."""
    if sign == 1:
        return q
    out = {k: v * sign for k, v in q.items() if k in _ADDITIVE}
    out["classes"] = {k: [c * sign for c in v] for k, v in q["classes"].items()}
    out["auc_pos"] = [c * sign for c in q["auc_pos"]]
    out["auc_neg"] = [c * sign for c in q["auc_neg"]]
    out["delay_max_s"] = 0.0
    out["positive"] = q["positive"]
    return out


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """The ROC AUC of positives and negatives counted in the same score bins (ties, within
    a bin, count half)."""
    if pos.sum() == 0 or neg.sum() == 0:
        return None
    # P(score_pos > score_neg) + half the ties, bin by bin.
    below = np.cumsum(neg) - neg
    wins = (pos * below).sum() + 0.5 * (pos * neg).sum()
    return float(wins / (pos.sum() * neg.sum()))


def quality_summary(q: dict[str, Any], rows: int) -> dict[str, Any]:
    """The figures of a window's quality (``None`` where nothing is known yet)."""
    n = q["labels"]
    out: dict[str, Any] = {
        "labels": n,
        "coverage": n / rows if rows else 0.0,
        "delay_mean_s": q["delay_sum_s"] / n if n else None,
        "delay_max_s": q["delay_max_s"] if n else None,
    }
    if q["classes"]:
        f1s = []
        for tp, fp, fn in q["classes"].values():
            # A class whose only labels were replaced is in neither labels nor answers.
            denominator = 2 * tp + fp + fn
            if denominator:
                f1s.append(2 * tp / denominator)
        out.update(
            accuracy=q["correct"] / n if n else None,
            f1=float(np.mean(f1s)) if f1s else None,
            log_loss=q["logloss_sum"] / q["logloss_n"] if q["logloss_n"] else None,
            roc_auc=roc_auc(np.asarray(q["auc_pos"], float), np.asarray(q["auc_neg"], float)),
        )
    elif q["numeric"]:
        m = q["numeric"]
        total = q["sum_y2"] - q["sum_y"] ** 2 / m
        out.update(
            rmse=math.sqrt(q["sse"] / m),
            mae=q["sae"] / m,
            r2=1 - q["sse"] / total if total > 0 else None,
        )
    return out
