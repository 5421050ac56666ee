"""Feedback: labels that arrive later for answers already logged (by ``inference_id``),
as rows of a deployment's feedback table. The API appends them through its record batcher;
what the rows are, and which deployment may take them, is decided here."""

from __future__ import annotations

import hashlib
from datetime import datetime

import orjson
import pyarrow as pa

from loopml.core.predictions import (
    FEEDBACK_COLUMNS,
    FeedbackItem,
    canonical_text,
    numeric_value,
)
from loopml.store import MetadataStore, deployments

FEEDBACK_SCHEMA = pa.schema(
    [pa.field(c.name, pa.type_for_alias(c.type), c.nullable) for c in FEEDBACK_COLUMNS]
)


def check_deployment(store: MetadataStore, project: str, deployment: str) -> None:
    """Refuse labels for a deployment that does not exist.

    Raises:
        NotFoundError: no such project or deployment.
    """
    with store.session() as session:
        deployments.get(session, project, deployment)


def labels_digest(items: list[FeedbackItem]) -> str:
    """What a post's labels are, hashed: the record batcher's check that a retried
    idempotency key carries the same labels."""
    # What the labels are, not when they came: a retry must hash the same.
    dumped = [[i.inference_id, i.row_index, type(i.label).__name__, i.label] for i in items]
    return hashlib.sha256(orjson.dumps(dumped)).hexdigest()


def feedback_records(items: list[FeedbackItem], received_at: datetime) -> pa.Table:
    """Labels as rows of the feedback table (``FEEDBACK_COLUMNS``)."""
    received = received_at.replace(tzinfo=None)
    return pa.table(
        {
            "inference_id": [i.inference_id for i in items],
            "row_index": [i.row_index for i in items],
            "label": [canonical_text(i.label) for i in items],
            "label_value": [numeric_value(i.label) for i in items],
            "received_at": [received] * len(items),
        },
        schema=FEEDBACK_SCHEMA,
    )
