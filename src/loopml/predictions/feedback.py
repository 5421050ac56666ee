"""Feedback: labels that arrive later for answers already logged (by ``inference_id``),
as rows of a deployment's feedback table. The API appends them through its record batcher;
what the rows are, and which deployment may take them, is decided here."""

from __future__ import annotations

import hashlib
from datetime import datetime

import anyio.to_thread
import orjson
import pyarrow as pa

from loopml.core.clock import utcnow
from loopml.core.deployments import feedback_table, validate_deployment_name
from loopml.core.errors import ServiceUnavailableError
from loopml.core.ingest import validate_idempotency_key
from loopml.core.names import validate_project_name
from loopml.core.predictions import (
    FEEDBACK_COLUMNS,
    FeedbackBatch,
    FeedbackItem,
    FeedbackResult,
    canonical_text,
    numeric_value,
)
from loopml.data import records
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


async def add(
    store: MetadataStore,
    batcher: records.RecordBatcher | None,
    project: str,
    deployment: str,
    body: FeedbackItem | FeedbackBatch,
    *,
    key: str | None,
    actor: str,
) -> FeedbackResult:
    """Append labels to the deployment's feedback table once they are durably committed.

    Raises:
        ValidationError: a bad project, deployment name or idempotency key; a key already
            used for other labels.
        NotFoundError: no such project or deployment.
        ServiceUnavailableError: the server is starting or stopping; retry.
    """
    validate_project_name(project)
    validate_deployment_name(deployment)
    if key is not None:
        validate_idempotency_key(key)
    if batcher is None:
        raise ServiceUnavailableError(
            "record ingest is not running: the server has not started, or is stopping"
        )
    await anyio.to_thread.run_sync(check_deployment, store, project, deployment)
    items = body.items if isinstance(body, FeedbackBatch) else [body]
    post = records.RecordPost(
        records=feedback_records(items, utcnow()),
        body_sha256=labels_digest(items),
        key=key,
    )
    table = feedback_table(deployment)
    commit = await batcher.append(project, table, post, actor=actor)
    return FeedbackResult(
        deployment=deployment,
        table=table,
        accepted=commit.rows,
        version=commit.version,
        replayed=commit.replayed,
    )
