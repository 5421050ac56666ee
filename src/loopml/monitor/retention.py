"""Retention of raw prediction-log and feedback rows (``monitor.prediction_retention_days``)
while the windows computed from them stay.

A row is deleted only once it can no longer change a window: a prediction at or after the
deployment's watermark has not been counted yet, and one a late label may still join (up to
``label_horizon_s`` before the feedback watermark) is still needed; a label at or after the
feedback watermark has not been read yet. So each table's cutoff is the earliest of
``now - N days`` and those bounds; a deployment the monitor never read keeps every row.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from loopml.core.clock import as_utc
from loopml.core.deployments import Deployment, feedback_table, prediction_table
from loopml.core.errors import NotFoundError
from loopml.data import housekeeping
from loopml.settings import MonitorSettings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events

log = logging.getLogger("loopml.monitor")
EVENT = "predictions.pruned"


def cutoffs(
    settings: MonitorSettings, watermark: dict[str, Any], now: datetime
) -> tuple[datetime, datetime] | None:
    """The moments before which prediction rows and feedback rows may go, or ``None``
    (retention off, or nothing counted yet)."""
    if not settings.prediction_retention_days:
        return None
    predictions, feedback = watermark.get("predictions"), watermark.get("feedback")
    if not predictions or not feedback:
        return None
    read_p = as_utc(datetime.fromisoformat(predictions))
    read_f = as_utc(datetime.fromisoformat(feedback))
    cutoff = now - timedelta(days=settings.prediction_retention_days)
    joinable = read_f - timedelta(seconds=settings.label_horizon_s)
    return min(cutoff, read_p, joinable), min(cutoff, read_f)


def _prune(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    column: str,
    before: datetime,
    actor: str,
) -> int:
    try:
        report = housekeeping.prune(
            store, artifacts, project, table, column=column, before=before, actor=actor
        )
    except NotFoundError:
        return 0  # no rows logged yet
    return report.rows_deleted


def prune_deployment(
    store: MetadataStore,
    artifacts: ArtifactStore,
    settings: MonitorSettings,
    deployment: Deployment,
    watermark: dict[str, Any],
    now: datetime,
    *,
    actor: str,
) -> dict[str, Any] | None:
    """Delete a deployment's rows past retention; appends ``predictions.pruned`` with the
    counts when any went, and returns its payload (``None`` when nothing went)."""
    bounds = cutoffs(settings, watermark, now)
    if bounds is None:
        return None
    project, name = deployment.project, deployment.name
    before_p, before_f = bounds
    deleted_p = _prune(store, artifacts, project, prediction_table(name), "ts", before_p, actor)
    deleted_f = _prune(
        store, artifacts, project, feedback_table(name), "received_at", before_f, actor
    )
    if not deleted_p and not deleted_f:
        return None
    payload = {
        "deployment": name,
        "predictions": deleted_p,
        "predictions_before": before_p.isoformat(),
        "feedback": deleted_f,
        "feedback_before": before_f.isoformat(),
    }
    with store.session() as session:
        events.append(
            session, type=EVENT, subject=name, project=project, payload=payload, actor=actor
        )
    log.info("pruned %s/%s: %d predictions, %d labels", project, name, deleted_p, deleted_f)
    return payload
