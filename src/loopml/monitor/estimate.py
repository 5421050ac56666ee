"""Quality estimated before labels come back: confidence-based performance estimation (CBPE,
as NannyML does it), from the probabilities the prediction log keeps for classifiers.

If a classifier's probabilities are calibrated, a row whose predicted class has probability
``p`` is right with probability ``p``: the expected accuracy of a window is the mean of the
predicted class's probability. For two classes, a row with positive-class score ``s`` is a
positive with probability ``s``: per score bin (the ``AUC_BINS`` bins live quality uses) the
expected positives are the sum of the scores and the expected negatives the rest, and the
ROC AUC of those expected counts is the estimate (NannyML builds its ROC curve from the same
expected true and false positives). The state is counts and sums, so windows still add.

The estimate is only as good as the calibration. When the version's reference holds a
calibration table (``calibration``, measured on its eval set), each row's score is mapped
through it when the row is reduced: for two classes the positive score becomes the observed
positive rate (the predicted class's probability follows from it, and the bins' expected
positives are the mapped scores' sums); for more, the predicted class's probability becomes
the observed accuracy. The state stays sums and counts, plus how many rows were mapped.
Without a table the probabilities are used as the model gives them.

A regressor has no probabilities: its rows are estimated from its reference's error table
(``error_table``: the eval set's absolute and squared errors by predicted value), each
row's numeric prediction mapped to its expected errors, summed (``regression_rows``,
``abs_error_sum``, ``squared_error_sum``); the summary's method is ``ERROR_METHOD`` and its
figures ``mae`` and ``rmse``. Without an error table (no eval split, or a profile stored
before it existed) a regressor has no estimate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from loopml.monitor.calibration import CalibrationTable
from loopml.monitor.error_table import ErrorTable
from loopml.monitor.quality import AUC_BINS, roc_auc

METHOD = "cbpe"
ERROR_METHOD = "eval errors by prediction"


def empty_estimate() -> dict[str, Any]:
    """The sums of a window with no probabilities."""
    return {
        "rows": 0,
        "calibrated": 0,
        "confidence_sum": 0.0,
        "bin_rows": [0] * AUC_BINS,
        "bin_scores": [0.0] * AUC_BINS,
        "positive": None,
        "regression_rows": 0,
        "abs_error_sum": 0.0,
        "squared_error_sum": 0.0,
    }


def estimate_of(
    rows: pa.Table,
    calibration: CalibrationTable | None = None,
    errors: ErrorTable | None = None,
) -> dict[str, Any]:
    """The sums of prediction-log ``rows`` (one window, one model version) that carry
    probabilities, mapped through ``calibration`` when there is one; with a regressor's
    ``errors`` table, the expected errors of the rows with a numeric prediction instead."""
    out = empty_estimate()
    if errors is not None:
        return _regression(rows, errors, out)
    if "probabilities" not in rows.column_names:  # rows read with a narrower projection
        return out
    present = pc.is_valid(rows["probabilities"])
    if not pc.any(present).as_py():
        return out
    read = _read(
        pc.filter(rows["probabilities"], present).to_pylist(),
        pc.filter(rows["prediction"], present).to_pylist(),
    )
    out["rows"], out["positive"] = len(read.confidence), read.positive_class
    if not out["rows"]:
        return out
    out["calibrated"] = read.calibrate(calibration)
    out["confidence_sum"] = float(read.confidence.sum())
    binary = read.binary
    if binary.any():
        where = np.minimum((read.score[binary] * AUC_BINS).astype(int), AUC_BINS - 1)
        out["bin_rows"] = np.bincount(where, minlength=AUC_BINS).tolist()
        out["bin_scores"] = np.bincount(
            where, weights=read.expected[binary], minlength=AUC_BINS
        ).tolist()
    return out


def _regression(rows: pa.Table, errors: ErrorTable, out: dict[str, Any]) -> dict[str, Any]:
    if "prediction_value" not in rows.column_names:
        return out
    values = rows["prediction_value"].to_numpy(zero_copy_only=False)
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return out
    absolute, squared = errors.expected(values)
    out["regression_rows"] = len(values)
    out["abs_error_sum"] = float(absolute.sum())
    out["squared_error_sum"] = float(squared.sum())
    return out


class _Read:
    """Rows' figures: the predicted class's probability; for two classes the positive
    score (NaN otherwise), whether the positive class was predicted, and each row's chance
    of being a positive (the score, until calibrated)."""

    def __init__(
        self, confidence: list[float], score: list[float], guessed: list[bool], positive: Any
    ) -> None:
        self.confidence = np.asarray(confidence, dtype=np.float64)
        self.score = np.clip(np.asarray(score, dtype=np.float64), 0.0, 1.0)
        self.guessed = np.asarray(guessed, dtype=bool)
        self.binary = ~np.isnan(self.score)
        self.expected = self.score.copy()
        self.positive_class = positive

    def calibrate(self, table: CalibrationTable | None) -> int:
        """Map the rows the table is for through it; how many were mapped."""
        binary = self.binary
        if table is not None and table.kind == "positive" and binary.any():
            mapped = table.calibrate(self.score[binary])
            self.expected[binary] = mapped
            self.confidence[binary] = np.where(self.guessed[binary], mapped, 1 - mapped)
            return int(binary.sum())
        if table is not None and table.kind == "confidence" and (~binary).any():
            self.confidence[~binary] = table.calibrate(self.confidence[~binary])
            return int((~binary).sum())
        return 0


def _read(texts: list[str], predicted: list[Any]) -> _Read:
    confidence: list[float] = []
    score: list[float] = []
    guessed: list[bool] = []
    positive = None
    for text, guess in zip(texts, predicted, strict=True):
        scores = _scores(text)
        if not scores:
            continue
        values, keys = list(scores.values()), list(scores)
        p = scores.get(str(guess))
        confidence.append(float(p) if p is not None else max(values))
        two = len(values) == 2
        score.append(values[1] if two else np.nan)
        # A prediction that is not among the classes counts as the likelier class.
        guessed.append(two and (str(guess) == keys[1] if p is not None else values[1] >= values[0]))
        if two:
            positive = keys[1]
    return _Read(confidence, score, guessed, positive)


def _scores(text: str) -> dict[str, float]:
    """A row's probabilities by class (by position, ``"0"``, ``"1"``, ..., when the log
    kept a list); empty when they are not numbers."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    items = parsed.items() if isinstance(parsed, dict) else enumerate(parsed or ())
    out: dict[str, float] = {}
    for key, value in items:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return {}
        out[str(key)] = float(value)
    return out


def merge_estimate(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    """Two windows' sums added (windows stored before the estimate existed have none)."""
    a, b = a or empty_estimate(), b or empty_estimate()
    return {
        "rows": a["rows"] + b["rows"],
        # Windows stored before calibration existed have no "calibrated".
        "calibrated": a.get("calibrated", 0) + b.get("calibrated", 0),
        "confidence_sum": a["confidence_sum"] + b["confidence_sum"],
        "bin_rows": [x + y for x, y in zip(a["bin_rows"], b["bin_rows"], strict=True)],
        "bin_scores": [x + y for x, y in zip(a["bin_scores"], b["bin_scores"], strict=True)],
        "positive": b["positive"] or a["positive"],
        # Windows stored before the regressors' estimate have none of these.
        **{
            key: a.get(key, 0) + b.get(key, 0)
            for key in ("regression_rows", "abs_error_sum", "squared_error_sum")
        },
    }


def estimate_summary(
    e: dict[str, Any] | None,
    calibration: CalibrationTable | None = None,
    errors: ErrorTable | None = None,
) -> dict[str, Any] | None:
    """The estimated figures, or ``None`` when no row could be estimated. ``calibrated``
    is true when every row went through the reference's table (``calibration``, whose
    eval-set ECE is shown); a regressor's figures come with its eval set's (``errors``)."""
    if e and e.get("regression_rows"):
        n = e["regression_rows"]
        return {
            "method": ERROR_METHOD,
            "rows": n,
            "mae": e["abs_error_sum"] / n,
            "rmse": float(np.sqrt(e["squared_error_sum"] / n)),
            "eval_mae": errors.mae if errors is not None else None,
            "eval_rmse": errors.rmse if errors is not None else None,
        }
    if not e or not e["rows"]:
        return None
    counts = np.asarray(e["bin_rows"], dtype=float)
    positives = np.asarray(e["bin_scores"], dtype=float)
    return {
        "method": METHOD,
        "rows": e["rows"],
        "accuracy": e["confidence_sum"] / e["rows"],
        "roc_auc": roc_auc(positives, counts - positives) if counts.sum() else None,
        "positive": e["positive"],
        "calibrated": e.get("calibrated", 0) == e["rows"],
        "ece": calibration.ece if calibration is not None else None,
    }
