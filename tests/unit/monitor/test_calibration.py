"""The calibration table of a classifier's scores against eval labels, and the CBPE estimate
mapped through it: over-confident probabilities (the true ones sharpened) estimate the
accuracy far too high as they are, and close to the truth once calibrated."""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from loopml.monitor.calibration import calibration_table, pooled, table_of
from loopml.monitor.estimate import estimate_of, estimate_summary, merge_estimate


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _overconfident(
    rng: np.random.Generator, rows: int, classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from true probabilities, and a model's probabilities that are the true
    ones sharpened (logits times 4): ranked right, far too sure."""
    if classes == 2:
        x = rng.normal(0, 1.5, rows)
        logits = np.column_stack([np.zeros(rows), x])
    else:
        logits = rng.normal(0, 1.2, (rows, classes))
    truth = _softmax(logits)
    labels = (rng.random(rows)[:, None] > truth.cumsum(axis=1)).sum(axis=1)
    return _softmax(4 * logits), labels


def _log(probabilities: np.ndarray) -> pa.Table:
    """Prediction-log rows as a model server writes them: the predicted class and a JSON
    object from class to probability."""
    keys = [str(i) for i in range(probabilities.shape[1])]
    texts = [
        orjson.dumps(dict(zip(keys, map(float, row), strict=True))).decode()
        for row in probabilities
    ]
    guesses = [keys[i] for i in probabilities.argmax(axis=1)]
    return pa.table({"prediction": guesses, "probabilities": texts})


def test_a_toy_table_has_its_bins_and_ece() -> None:
    # 50 rows scored 0.6 of which 30 positive (calibrated), 50 scored 0.9 of which 35
    # positive (0.2 too sure): two bins, the equal scores never split, ECE 0.5 * 0.2.
    scores = np.array([0.6] * 50 + [0.9] * 50)
    outcomes = np.array([1] * 30 + [0] * 20 + [1] * 35 + [0] * 15)
    table = table_of(scores, outcomes, kind="positive", positive="yes")
    assert [(b.lower, b.upper, b.rows) for b in table.bins] == [(0.6, 0.6, 50), (0.9, 0.9, 50)]
    assert [b.predicted for b in table.bins] == pytest.approx([0.6, 0.9])
    assert [b.observed for b in table.bins] == pytest.approx([0.6, 0.7])
    assert table.ece == pytest.approx(0.1)
    assert (table.rows, table.positive) == (100, "yes")
    # Distinct scores: ten bins of ten rows, each one tenth of the range.
    spread = table_of(np.arange(100) / 100, np.arange(100) % 2, kind="positive")
    assert [b.rows for b in spread.bins] == [10] * 10
    assert [(b.lower, b.upper) for b in spread.bins[:2]] == [(0.0, 0.09), (0.1, 0.19)]
    assert [b.observed for b in spread.bins] == [0.5] * 10
    # A score between the bins' means is interpolated; beyond them, the end bins' rates.
    assert table.calibrate(np.array([0.5, 0.6, 0.75, 0.9, 1.0])) == pytest.approx(
        [0.6, 0.6, 0.65, 0.7, 0.7]
    )


def test_the_mapping_is_monotone_and_stays_within_zero_and_one() -> None:
    assert pooled([0.2, 0.5, 0.4, 0.8], [1, 1, 1, 1]) == pytest.approx([0.2, 0.45, 0.45, 0.8])
    assert pooled([0.9, 0.1], [3, 1]) == pytest.approx([0.7, 0.7])
    # Observed rates that go down from 0.5 to 0.3 are pooled: a higher score never maps lower.
    scores = np.array([0.1] * 40 + [0.5] * 40 + [0.9] * 20)
    outcomes = np.array([0] * 40 + [1] * 20 + [0] * 20 + [1] * 6 + [0] * 14)
    table = table_of(scores, outcomes, kind="positive")
    mapped = table.calibrate(np.linspace(0, 1, 101))
    assert np.all(np.diff(mapped) >= 0)
    assert mapped.min() >= 0.0
    assert mapped.max() <= 1.0
    assert table.calibrate(np.array([0.5, 0.9])) == pytest.approx([26 / 60, 26 / 60])


def test_too_few_eval_rows_give_no_table() -> None:
    probabilities, labels = _overconfident(np.random.default_rng(0), 99, 2)
    assert calibration_table(probabilities, [str(v) for v in labels], ["0", "1"]) is None


@pytest.mark.parametrize("classes", [2, 3])
def test_an_overconfident_classifier_is_estimated_right_once_calibrated(classes: int) -> None:
    rng = np.random.default_rng(11)
    eval_proba, eval_labels = _overconfident(rng, 4000, classes)
    table = calibration_table(
        eval_proba, [str(v) for v in eval_labels], [str(i) for i in range(classes)]
    )
    assert table is not None
    assert table.kind == ("positive" if classes == 2 else "confidence")
    assert table.ece > 0.15  # the model says ~0.9 where it is right ~0.65-0.75
    window, labels = _overconfident(rng, 4000, classes)
    rows = _log(window)
    true_accuracy = float(np.mean(window.argmax(axis=1) == labels))
    raw = estimate_summary(estimate_of(rows))
    calibrated = estimate_summary(estimate_of(rows, table), table)
    assert raw is not None
    assert calibrated is not None
    assert raw["accuracy"] - true_accuracy > 0.12
    assert abs(calibrated["accuracy"] - true_accuracy) < 0.03
    assert (raw["calibrated"], raw["ece"]) == (False, None)
    assert (calibrated["calibrated"], calibrated["ece"]) == (True, table.ece)
    if classes == 2:
        true_auc = roc_auc_score(labels, window[:, 1])
        assert raw["roc_auc"] - true_auc > 0.1
        assert abs(calibrated["roc_auc"] - true_auc) < 0.02


def test_calibrated_sums_still_add_across_pieces() -> None:
    rng = np.random.default_rng(12)
    eval_proba, eval_labels = _overconfident(rng, 2000, 2)
    table = calibration_table(eval_proba, [str(v) for v in eval_labels], ["0", "1"])
    assert table is not None
    rows = _log(_overconfident(rng, 1000, 2)[0])
    whole = estimate_summary(estimate_of(rows, table), table)
    halves = merge_estimate(
        estimate_of(rows.slice(0, 400), table), estimate_of(rows.slice(400), table)
    )
    # A window stored before calibration existed (no "calibrated" count) adds as none mapped.
    old = estimate_of(rows.slice(0, 10))
    del old["calibrated"]
    assert estimate_summary(halves, table) == pytest.approx(whole)
    mixed = estimate_summary(merge_estimate(old, estimate_of(rows.slice(10), table)), table)
    assert mixed is not None
    assert mixed["calibrated"] is False
