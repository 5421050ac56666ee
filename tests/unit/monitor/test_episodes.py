"""Drift episodes across windows: a shift that lasts into the next hour's window is one
``drift.detected``, and unshifted traffic afterwards closes it with ``drift.resolved``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from loopml.faces.context import AppContext
from loopml.monitor.drift import DriftConfig
from loopml.monitor.reference import Reference, profile_table
from loopml.monitor.reference_store import save_reference
from loopml.store import events
from loopml.store import monitor as rows
from tests.unit.monitor.logged import log_predictions, monitor_at

# Rows a window: enough that an unshifted sample's Wasserstein distance stays well under the
# 0.1 threshold (at 400 rows it reached 0.1 by chance on one seed).
ROWS = 2000


def _frame(rng: np.random.Generator, rows: int, shift_b: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"a": rng.normal(0, 1, rows), "b": rng.normal(shift_b, 1, rows)})


def _reference(rng: np.random.Generator) -> Reference:
    train = _frame(rng, 3000)
    profile = profile_table(
        pa.Table.from_pandas(train),
        {"a": "numeric", "b": "numeric"},
        task="classification",
        predictions=(train["a"] + train["b"] > 0).astype(int).to_numpy(),
        classes=["0", "1"],
    )
    return Reference(status="ready", source="test training rows", profile=profile)


def _serve(ctx: AppContext, frame: pd.DataFrame, at: datetime, prefix: str) -> None:
    guesses = (frame["a"] + frame["b"] > 0).astype(int).to_numpy()
    log_predictions(ctx, "churn-api", frame, at, guesses, prefix=prefix)


def _drift_events(ctx: AppContext) -> list[tuple[str, dict[str, Any]]]:
    with ctx.store.session() as session:
        return [(e.type, e.payload) for e in events.list_(session, type="drift.*").items]


def test_a_shift_lasting_into_the_next_window_is_one_episode_resolved_by_unshifted_rows(
    store_ctx: AppContext,
) -> None:
    rng = np.random.default_rng(7)
    save_reference(store_ctx.store, "default", "churn", 1, _reference(rng))
    # Four hours ago, so every window lies within the monitor's 24 h backfill and retention.
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    clock = [hour]
    monitor = monitor_at(store_ctx, clock)

    def round_at(moment: datetime) -> list[str]:
        clock[0] = moment
        return monitor.tick().events

    # Hour 1: feature b shifted; the round after it sees the window drift.
    _serve(store_ctx, _frame(rng, ROWS, shift_b=2.0), hour + timedelta(minutes=10), "h1")
    assert round_at(hour + timedelta(hours=1)) == ["drift.detected"]
    # Hour 2, the next window: still shifted. The episode is open: no second event.
    _serve(store_ctx, _frame(rng, ROWS, shift_b=2.0), hour + timedelta(hours=1, minutes=10), "h2")
    assert round_at(hour + timedelta(hours=2)) == []
    # Two windows of 1 h judged drifted, one episode.
    [(kind, detected)] = _drift_events(store_ctx)
    assert (kind, detected["drifted"], detected["share"]) == ("drift.detected", ["b"], 0.5)
    assert detected["window_start"] == hour.isoformat()
    assert detected["scores"]["b"] > 0.1  # Wasserstein / std, threshold 0.1

    # Hour 3: unshifted traffic. The newest window's share (0) is under half the threshold.
    _serve(store_ctx, _frame(rng, ROWS), hour + timedelta(hours=2, minutes=10), "h3")
    assert round_at(hour + timedelta(hours=3)) == ["drift.resolved"]
    kinds = [kind for kind, _ in _drift_events(store_ctx)]
    assert kinds == ["drift.detected", "drift.resolved"]
    resolved = _drift_events(store_ctx)[1][1]
    assert (resolved["share"], resolved["drifted"], resolved["scores"]) == (0.0, [], {})
    assert resolved["window_start"] == (hour + timedelta(hours=2)).isoformat()
    assert (resolved["model"], resolved["version"]) == ("churn", 1)
    # A quiet round (no new rows) emits nothing either way.
    assert round_at(hour + timedelta(hours=3, minutes=30)) == []

    # Hour 4: the shift comes back, a new episode.
    _serve(store_ctx, _frame(rng, ROWS, shift_b=2.0), hour + timedelta(hours=3, minutes=40), "h4")
    assert round_at(hour + timedelta(hours=4)) == ["drift.detected"]
    kinds = [kind for kind, _ in _drift_events(store_ctx)]
    assert kinds == ["drift.detected", "drift.resolved", "drift.detected"]


def test_a_young_window_of_single_row_requests_does_not_drift(store_ctx: AppContext) -> None:
    """89 single-row requests drawn from the training distribution, over 8 columns: the
    distances of such a small window pass 0.1 by chance (which the distance alone called
    drift of every column), but nothing drifted beyond chance at that size."""
    rng = np.random.default_rng(11)
    names = [f"x{i}" for i in range(8)]

    def frame(rows: int) -> pd.DataFrame:
        return pd.DataFrame({n: rng.normal(0, 1, rows) for n in names})

    train = frame(3000)
    profile = profile_table(
        pa.Table.from_pandas(train),
        dict.fromkeys(names, "numeric"),
        task="classification",
        predictions=(train["x0"] > 0).astype(int).to_numpy(),
        classes=["0", "1"],
    )
    reference = Reference(status="ready", source="test training rows", profile=profile)
    save_reference(store_ctx.store, "default", "churn", 1, reference)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    clock = [hour + timedelta(hours=1)]
    young = frame(89)
    guesses = (young["x0"] > 0).astype(int).to_numpy()
    log_predictions(store_ctx, "churn-api", young, hour + timedelta(minutes=5), guesses, batch=1)
    assert monitor_at(store_ctx, clock).tick().events == []
    assert _drift_events(store_ctx) == []
    with store_ctx.store.session() as session:
        [window] = rows.list_windows(session, "default", "churn-api", size="1h", limit=1)
    drift = window["summary"]["drift"]
    assert (drift["judged"], drift["drifted"], drift["dataset_drift"]) == (8, [], False)
    distances = sorted(c["score"] for c in drift["columns"])
    assert distances[-1] > 0.1  # the figures users read are still there
    assert all(c["p_value"] >= c["alpha"] == DriftConfig().level(1) / 8 for c in drift["columns"])
