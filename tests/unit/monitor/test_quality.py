"""Live quality of a window against scikit-learn on the same joined rows: F1, ROC AUC and
log loss of a classifier, RMSE, MAE and R2 of a regressor, per hour and in the day window
the hours merge into; a label sent again for the same row replaces the first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from loopml.faces.context import AppContext
from loopml.predictions import reader
from loopml.store import monitor as rows
from tests.unit.monitor.logged import log_labels, log_predictions, monitor_at


def _two_hours() -> tuple[datetime, datetime]:
    """Two consecutive past hours of one UTC day (within the monitor's 24 h backfill)."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first = now - timedelta(hours=2)
    if first.day != (first + timedelta(hours=1)).day:
        first -= timedelta(hours=1)
    return first, first + timedelta(hours=1)


def _windows(ctx: AppContext, size: str) -> dict[datetime, dict[str, Any]]:
    with ctx.store.session() as session:
        found = rows.list_windows(session, "default", "churn-api", size=size)
    return {w["start"]: w for w in found}


def _frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.normal(0, 1, n)})


def _classifier_hour(
    ctx: AppContext, rng: np.random.Generator, at: datetime, n: int, prefix: str
) -> dict[str, np.ndarray]:
    """``n`` answers of a two-class model at ``at``; their labels for 80 % of them."""
    # Scores at the centres of the monitor's 100 AUC bins: a bin then holds one score, so
    # its ties are real ties and the binned AUC is the exact one.
    score = (rng.integers(0, 100, n) + 0.5) / 100
    guess = (score >= 0.5).astype(int)
    truth = (rng.random(n) < score).astype(int)  # calibrated: P(1) = score
    keys = log_predictions(
        ctx,
        "churn-api",
        _frame(rng, n),
        at,
        guess,
        np.column_stack([1 - score, score]),
        ["0", "1"],
        prefix=prefix,
    )
    labelled = rng.random(n) < 0.8
    log_labels(
        ctx,
        "churn-api",
        [k for k, keep in zip(keys, labelled, strict=True) if keep],
        truth[labelled].tolist(),
        at + timedelta(minutes=30),
    )
    return {"score": score[labelled], "guess": guess[labelled], "truth": truth[labelled]}


def _expect_classifier(quality: dict[str, Any], joined: dict[str, np.ndarray], rows_: int) -> None:
    y, guess, score = joined["truth"], joined["guess"], joined["score"]
    assert quality["labels"] == len(y)
    assert quality["coverage"] == pytest.approx(len(y) / rows_)
    assert quality["accuracy"] == pytest.approx(metrics.accuracy_score(y, guess), abs=1e-12)
    f1 = metrics.f1_score(y, guess, average="macro")
    assert quality["f1"] == pytest.approx(f1, abs=1e-12)
    assert quality["roc_auc"] == pytest.approx(metrics.roc_auc_score(y, score), abs=1e-12)
    proba = np.column_stack([1 - score, score])
    assert quality["log_loss"] == pytest.approx(metrics.log_loss(y, proba), rel=1e-9)


def test_classifier_quality_equals_sklearn_per_hour_and_in_the_day_window(
    store_ctx: AppContext,
) -> None:
    rng = np.random.default_rng(11)
    first, second = _two_hours()
    clock = [first]
    monitor = monitor_at(store_ctx, clock)
    joined = {}
    for start, n, prefix in ((first, 900, "h1"), (second, 700, "h2")):
        joined[start] = _classifier_hour(store_ctx, rng, start + timedelta(minutes=5), n, prefix)
        clock[0] = start + timedelta(hours=1)  # a round after each hour: two pieces, one day
        monitor.tick()
    hours = _windows(store_ctx, "1h")
    for start, n in ((first, 900), (second, 700)):
        _expect_classifier(hours[start]["summary"]["quality"], joined[start], n)
    [day] = _windows(store_ctx, "1d").values()
    both = {k: np.concatenate([joined[first][k], joined[second][k]]) for k in joined[first]}
    _expect_classifier(day["summary"]["quality"], both, 1600)
    assert day["labels"] == len(both["truth"])


def test_regressor_quality_equals_sklearn_per_hour_and_in_the_day_window(
    store_ctx: AppContext,
) -> None:
    rng = np.random.default_rng(12)
    first, second = _two_hours()
    clock = [first]
    monitor = monitor_at(store_ctx, clock)
    truths, guesses = [], []
    for start, n, prefix in ((first, 600, "h1"), (second, 500, "h2")):
        guess = rng.normal(100, 20, n)
        truth = guess + rng.normal(3, 10, n)
        keys = log_predictions(
            store_ctx, "churn-api", _frame(rng, n), start, guess.tolist(), prefix=prefix
        )
        log_labels(store_ctx, "churn-api", keys, truth.tolist(), start + timedelta(minutes=20))
        clock[0] = start + timedelta(hours=1)
        monitor.tick()
        quality = _windows(store_ctx, "1h")[start]["summary"]["quality"]
        _expect_regressor(quality, truth, guess)
        truths.append(truth)
        guesses.append(guess)
    [day] = _windows(store_ctx, "1d").values()
    _expect_regressor(day["summary"]["quality"], np.concatenate(truths), np.concatenate(guesses))


def _expect_regressor(quality: dict[str, Any], y: np.ndarray, guess: np.ndarray) -> None:
    assert (quality["labels"], quality["coverage"]) == (len(y), 1.0)
    rmse = np.sqrt(metrics.mean_squared_error(y, guess))
    assert quality["rmse"] == pytest.approx(rmse, rel=1e-9)
    assert quality["mae"] == pytest.approx(metrics.mean_absolute_error(y, guess), rel=1e-9)
    assert quality["r2"] == pytest.approx(metrics.r2_score(y, guess), rel=1e-9)


@pytest.mark.parametrize("batch_rows", [100_000, 7], ids=["one-batch", "batches-of-7"])
def test_a_label_sent_again_for_the_same_row_replaces_the_first(
    store_ctx: AppContext, batch_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In batches of 7 a row's labels of one round fall in different batches.
    monkeypatch.setattr(reader, "BATCH_ROWS", batch_rows)
    rng = np.random.default_rng(13)
    first, _ = _two_hours()
    clock = [first + timedelta(minutes=20)]
    monitor = monitor_at(store_ctx, clock)
    score = np.full(100, 0.75)
    keys = log_predictions(
        store_ctx,
        "churn-api",
        _frame(rng, 100),
        first + timedelta(minutes=5),
        [1] * 100,
        np.column_stack([1 - score, score]),
        ["0", "1"],
    )

    def quality() -> dict[str, Any]:
        hour = _windows(store_ctx, "1h")[first]["summary"]["quality"]
        day = next(iter(_windows(store_ctx, "1d").values()))["summary"]["quality"]
        assert hour == day
        return dict(hour)

    # Every row labelled 0: all wrong.
    log_labels(store_ctx, "churn-api", keys, [0] * 100, first + timedelta(minutes=10))
    monitor.tick()
    assert (quality()["labels"], quality()["accuracy"]) == (100, 0.0)

    # A later round: the first 60 labelled again, now 1 (right), and 10 of them twice in one
    # post; within the round, rows 50-59 get a third label (0 again), the newest.
    again = keys[:60] + keys[:10]
    log_labels(store_ctx, "churn-api", again, [1] * 70, first + timedelta(minutes=25))
    log_labels(store_ctx, "churn-api", keys[50:60], [0] * 10, first + timedelta(minutes=26))
    clock[0] = first + timedelta(minutes=30)
    monitor.tick()
    got = quality()
    assert (got["labels"], got["coverage"]) == (100, 1.0)
    assert got["accuracy"] == pytest.approx(50 / 100)
    truth = [1] * 50 + [0] * 50
    f1 = metrics.f1_score(truth, [1] * 100, average="macro", zero_division=0)
    assert got["f1"] == pytest.approx(f1)
    proba = np.column_stack([1 - score, score])
    assert got["log_loss"] == pytest.approx(metrics.log_loss(truth, proba, labels=[0, 1]))

    # Rows 0-9 labelled once more, 0: replaced again, never counted twice.
    log_labels(store_ctx, "churn-api", keys[:10], [0] * 10, first + timedelta(minutes=40))
    clock[0] = first + timedelta(minutes=45)
    monitor.tick()
    got = quality()
    assert (got["labels"], got["coverage"], got["accuracy"]) == (100, 1.0, 0.4)
