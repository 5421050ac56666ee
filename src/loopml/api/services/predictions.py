"""Feedback and batch scoring for the API: validation, the record batcher, worker threads."""

from __future__ import annotations

from functools import partial

import anyio.to_thread

from loopml.core.clock import utcnow
from loopml.core.deployments import feedback_table, validate_deployment_name
from loopml.core.errors import ServiceUnavailableError
from loopml.core.ingest import validate_idempotency_key
from loopml.core.names import validate_project_name
from loopml.core.predictions import (
    BatchByDeployment,
    BatchByModel,
    BatchResult,
    FeedbackBatch,
    FeedbackItem,
    FeedbackResult,
)
from loopml.data import records
from loopml.predictions import feedback
from loopml.web.context import AppContext


async def add_feedback(
    ctx: AppContext,
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
    await anyio.to_thread.run_sync(feedback.check_deployment, ctx.store, project, deployment)
    items = body.items if isinstance(body, FeedbackBatch) else [body]
    post = records.RecordPost(
        records=feedback.feedback_records(items, utcnow()),
        body_sha256=feedback.labels_digest(items),
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


async def predict_batch(
    ctx: AppContext, project: str, body: BatchByModel | BatchByDeployment, *, actor: str
) -> BatchResult:
    """Score a table with a model (or a deployment's), in a worker thread; see
    ``loopml.predictions.batch.score_table``."""
    from loopml.predictions import batch

    validate_project_name(project)
    score = partial(
        batch.score_table,
        ctx.store,
        ctx.artifacts,
        project,
        input=body.input,
        output=body.output,
        mode=body.mode,
        model=body.model if isinstance(body, BatchByModel) else None,
        deployment=body.deployment if isinstance(body, BatchByDeployment) else None,
        workdir=ctx.settings.home / "tmp" / "batch",
        actor=actor,
        lake_settings=ctx.settings.lake,
    )
    return await anyio.to_thread.run_sync(score)
