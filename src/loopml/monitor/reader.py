"""Reading what arrived in a deployment's prediction log and feedback table, by time range.

Both are Delta tables; a range filter on ``ts`` (or ``received_at``) lets Arrow skip the
Parquet files and row groups whose statistics lie outside it, so a tick reads what arrived
since the watermark, not the whole log. Rows come in batches of ``BATCH_ROWS`` so a window's
memory stays bounded whatever the log's length.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from loopml.core.deployments import feedback_table, prediction_table
from loopml.core.errors import NotFoundError
from loopml.data import lake
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore

BATCH_ROWS = 100_000
PREDICTION_FIELDS = [
    "inference_id",
    "row_index",
    "model",
    "model_version",
    "role",
    "ts",
    "latency_ms",
    "inputs",
    "prediction",
    "prediction_value",
    "probabilities",
]
FEEDBACK_FIELDS = ["inference_id", "row_index", "label", "label_value", "received_at"]


def _naive(moment: datetime) -> pa.Scalar:
    return pa.scalar(moment.replace(tzinfo=None), pa.timestamp("us"))


def _dataset(
    store: MetadataStore, artifacts: ArtifactStore, project: str, table: str
) -> ds.Dataset | None:
    try:
        return lake.read_dataset(store, artifacts, project, table)
    except NotFoundError:
        return None


def predictions_between(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    deployment: str,
    start: datetime,
    end: datetime,
) -> Iterator[pa.Table]:
    """The deployment's prediction-log rows with ``start <= ts < end``, in batches."""
    dataset = _dataset(store, artifacts, project, prediction_table(deployment))
    if dataset is None:
        return
    where = (ds.field("ts") >= _naive(start)) & (ds.field("ts") < _naive(end))
    for batch in dataset.to_batches(columns=PREDICTION_FIELDS, filter=where, batch_size=BATCH_ROWS):
        if batch.num_rows:
            yield pa.Table.from_batches([batch])


def labelled_between(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    deployment: str,
    start: datetime,
    end: datetime,
    horizon_start: datetime,
) -> Iterator[pa.Table]:
    """Labels received with ``start <= received_at < end``, joined to their predictions
    (made at or after ``horizon_start``) by ``inference_id`` and ``row_index``."""
    feedback = _dataset(store, artifacts, project, feedback_table(deployment))
    if feedback is None:
        return
    log: ds.Dataset | None = None
    where = (ds.field("received_at") >= _naive(start)) & (ds.field("received_at") < _naive(end))
    for batch in feedback.to_batches(columns=FEEDBACK_FIELDS, filter=where, batch_size=BATCH_ROWS):
        if not batch.num_rows:
            continue
        # The log is opened only when labels arrived: most rounds have none, and opening a
        # Delta table is most of a quiet round's cost.
        log = log or _dataset(store, artifacts, project, prediction_table(deployment))
        if log is None:
            return
        labels = pa.Table.from_batches([batch])
        ids = pc.unique(labels["inference_id"])
        rows = log.to_table(
            columns=PREDICTION_FIELDS,
            filter=ds.field("inference_id").isin(ids) & (ds.field("ts") >= _naive(horizon_start)),
        )
        if rows.num_rows:
            yield rows.join(labels, keys=["inference_id", "row_index"], join_type="inner")
