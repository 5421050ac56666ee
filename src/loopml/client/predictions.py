"""Feedback on served predictions, and batch scoring, through the API."""

from __future__ import annotations

import contextlib
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from loopml.client._http import Http, segment
from loopml.client.artifacts import Progress
from loopml.client.tables import Tables
from loopml.core.errors import (
    ConflictError,
    LoopmlError,
    ServiceUnavailableError,
    ValidationError,
)
from loopml.core.ingest import validate_idempotency_key
from loopml.core.lake import validate_table_name
from loopml.core.predictions import (
    MAX_FEEDBACK_ITEMS,
    BatchResult,
    FeedbackBatch,
    FeedbackItem,
    FeedbackResult,
    Scalar,
)

RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)
"""Waits before each retry of a post of labels (jittered)."""
T = TypeVar("T")


def _retrying(send: Callable[[], T]) -> T:
    # With an idempotency key, a retry of a post that did land lands nothing.
    delays = iter(RETRY_DELAYS_S)
    while True:
        try:
            return send()
        except (ServiceUnavailableError, ConflictError) as exc:
            retryable = (
                exc.details.get("retryable", True) is not False
                if isinstance(exc, ServiceUnavailableError)
                else type(exc) is ConflictError
            )
            delay = next(delays, None)
            if delay is None or not retryable:
                raise
            time.sleep(delay * random.uniform(1.0, 1.5))  # noqa: S311 (jitter)


class Predictions:
    """``client.predictions``: labels for served predictions, and batch scoring."""

    def __init__(self, http: Http) -> None:
        self._http = http

    def feedback(
        self,
        deployment: str,
        inference_id: str,
        label: Scalar,
        *,
        row_index: int = 0,
        project: str = "default",
        idempotency_key: str | None = None,
    ) -> FeedbackResult:
        """Send the true label of one served prediction (by the inference id its answer
        carried); returns once it is durably committed to the deployment's feedback table.

        Raises:
            ValidationError: a bad inference id or label (a string, number or boolean).
            NotFoundError: no such deployment.
        """
        item = FeedbackItem(inference_id=inference_id, label=label, row_index=row_index)
        return self._post(project, deployment, item.model_dump(), idempotency_key)

    def feedback_many(
        self,
        deployment: str,
        items: Sequence[FeedbackItem | Mapping[str, Any]],
        *,
        project: str = "default",
        idempotency_key: str | None = None,
    ) -> FeedbackResult:
        """Send up to 10,000 labels (``{"inference_id", "label", "row_index"?}`` each) as
        one post: they land together or not at all.

        Raises:
            ValidationError: more than 10,000 items, or a bad one (checked before sending).
            NotFoundError: no such deployment.
        """
        if len(items) > MAX_FEEDBACK_ITEMS:
            raise ValidationError(
                f"{len(items)} labels in one call, more than {MAX_FEEDBACK_ITEMS}: split them",
                details={"items": len(items), "limit": MAX_FEEDBACK_ITEMS},
            )
        try:
            batch = FeedbackBatch(
                items=[i if isinstance(i, FeedbackItem) else FeedbackItem(**i) for i in items]
            )
        except ValueError as exc:
            raise ValidationError(f"invalid feedback: {exc}") from exc
        return self._post(project, deployment, batch.model_dump(), idempotency_key)

    def _post(
        self, project: str, deployment: str, body: dict[str, Any], key: str | None
    ) -> FeedbackResult:
        headers = {
            "Idempotency-Key": validate_idempotency_key(key or uuid.uuid4().hex),
        }
        path = f"/api/v1/projects/{segment(project)}/deployments/{segment(deployment)}/feedback"
        data = _retrying(lambda: self._http.json("POST", path, json=body, headers=headers))
        return FeedbackResult.model_validate(data)

    def batch(
        self,
        input: str,
        output: str,
        *,
        model: str | None = None,
        deployment: str | None = None,
        project: str = "default",
        mode: str = "append",
        timeout_s: float = 3600.0,
        on: str = "local",
    ) -> BatchResult:
        """Score a table (``customers`` or ``customers@3``) with a model (``churn``,
        ``churn/3``, ``churn@champion``) or what a deployment serves, into ``output``.

        The server runs the model (``on="ray"``: on its Ray cluster, in parallel); this
        waits until the output is committed (up to ``timeout_s``).

        Raises:
            ValidationError: neither or both of model and deployment; the input lacks a
                model column; a value a column refuses.
            NotFoundError: no such table, model or deployment.
        """
        if (model is None) == (deployment is None):
            raise ValidationError("pass either model= or deployment=, not both")
        body: dict[str, Any] = {"input": input, "output": output, "mode": mode, "on": on}
        body.update({"model": model} if model is not None else {"deployment": deployment})
        wait = httpx.Timeout(timeout_s, connect=10).as_dict()
        data = self._http.json(
            "POST",
            f"/api/v1/projects/{segment(project)}/predict-batch",
            json=body,
            extensions={"timeout": wait},
        )
        return BatchResult.model_validate(data)

    def batch_file(
        self,
        path: str | os.PathLike[str],
        output: str,
        *,
        model: str | None = None,
        deployment: str | None = None,
        project: str = "default",
        mode: str = "append",
        timeout_s: float = 3600.0,
        progress: Progress | None = None,
        on: str = "local",
    ) -> BatchResult:
        """Score a local CSV, Parquet or JSON Lines file: it is uploaded into a staging table
        (``<output>__input_<id>``), scored like ``batch``, and the staging table deleted.

        Args:
            progress: called with each uploaded chunk's size.
        """
        validate_table_name(output)
        staging = f"{output[:40]}__input_{uuid.uuid4().hex[:8]}"
        tables = Tables(self._http)
        try:
            tables.ingest_file(project, staging, Path(path), progress=progress)
            return self.batch(
                staging,
                output,
                model=model,
                deployment=deployment,
                project=project,
                mode=mode,
                timeout_s=timeout_s,
                on=on,
            )
        finally:
            # Best effort: the staging table may not exist (the upload failed), and an error
            # here must not hide the first one.
            with contextlib.suppress(LoopmlError):
                tables.delete(project, staging)
