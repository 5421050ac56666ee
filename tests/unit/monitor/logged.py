"""Prediction-log and feedback rows written as the platform writes them (a model server's
``PredictionRecord`` through the log's row builder, labels through the feedback API's), at
times the test chooses: the monitor's windows are by time, and its clock is the test's."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from loopml.core.deployments import feedback_table, prediction_table
from loopml.core.predictions import FeedbackItem
from loopml.data import lake
from loopml.faces.context import AppContext
from loopml.monitor.engine import Monitor
from loopml.predictions import _rows
from loopml.predictions.feedback import feedback_records
from loopml.predictions.intake import PredictionRecord
from loopml.settings import MonitorSettings

Key = tuple[str, int]
"""inference_id, row_index: what a label names."""


def monitor_settings(**changes: Any) -> MonitorSettings:
    """The monitor's settings for a test: no lag, no default rules (the test's are the only
    ones), windows of 1 h and 1 day."""
    base: dict[str, Any] = {"enabled": False, "lag_s": 0, "windows": ["1h", "1d"]}
    return MonitorSettings(**{**base, "default_rules": [], **changes})


def monitor_at(ctx: AppContext, clock: list[datetime], **changes: Any) -> Monitor:
    """A monitor whose time is ``clock[0]`` (the test moves it)."""
    return Monitor(ctx.store, ctx.artifacts, monitor_settings(**changes), clock=lambda: clock[0])


def log_predictions(
    ctx: AppContext,
    deployment: str,
    frame: pd.DataFrame,
    at: datetime,
    predictions: Sequence[Any],
    probabilities: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    *,
    prefix: str = "req",
    batch: int = 50,
    model: str = "churn",
    version: int = 1,
) -> list[Key]:
    """``frame``'s rows answered at ``at``, ``batch`` rows a request, appended to the
    deployment's prediction log; the (inference_id, row_index) of each row."""
    records = []
    keys: list[Key] = []
    for n, start in enumerate(range(0, len(frame), batch)):
        part = frame.iloc[start : start + batch]
        ident = f"{prefix}-{n}"
        records.append(
            PredictionRecord(
                inference_id=ident,
                deployment=deployment,
                model=model,
                version=version,
                timestamp=at.timestamp(),
                latency_s=0.002,
                protocol="predict",
                inputs={c: part[c].to_numpy() for c in part.columns},
                predictions=np.asarray(predictions[start : start + batch]),
                probabilities=None
                if probabilities is None
                else np.asarray(probabilities[start : start + batch]),
                classes=classes,
            )
        )
        keys += [(ident, i) for i in range(len(part))]
    rows = [row for record in records for row in _rows.record_rows(record, "primary")]
    lake.ingest_arrow(
        ctx.store,
        ctx.artifacts,
        "default",
        prediction_table(deployment),
        _rows.to_arrow(rows),
        actor="t",
    )
    return keys


def log_labels(
    ctx: AppContext, deployment: str, keys: Sequence[Key], labels: Sequence[Any], at: datetime
) -> None:
    """Labels received at ``at`` for the rows ``keys``, as the feedback API appends them."""
    items = [
        FeedbackItem(inference_id=ident, row_index=row, label=label)
        for (ident, row), label in zip(keys, labels, strict=True)
    ]
    lake.ingest_arrow(
        ctx.store,
        ctx.artifacts,
        "default",
        feedback_table(deployment),
        feedback_records(items, at),
        actor="t",
    )
