"""Labels for served predictions: ``POST /deployments/{name}/feedback`` (default project) and
``POST /api/v1/projects/{project}/deployments/{name}/feedback``.

The labels land in the deployment's feedback table (``<name>__feedback``), joinable with its
prediction log by ``inference_id`` in the SQL warehouse (see docs/predictions.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Header, Path, Request, Response

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.core.deployments import DEPLOYMENT_NAME_PATTERN
from loopml.core.ingest import IDEMPOTENCY_KEY_PATTERN
from loopml.core.names import DEFAULT_PROJECT
from loopml.core.predictions import FeedbackBatch, FeedbackItem, FeedbackResult
from loopml.faces.context import Actor, Ctx, get_running
from loopml.predictions import feedback

router = APIRouter(route_class=StrictJSONRoute, tags=["feedback"], responses=ERROR_RESPONSES)
PROJECT = project_path("The project that owns the deployment.")
NAME = Path(
    description="The deployment's name.",
    max_length=40,
    json_schema_extra={"pattern": DEPLOYMENT_NAME_PATTERN.pattern},
)
BODY = Body(
    description='One label, `{"inference_id": "...", "label": ...}`, or up to 10,000 as '
    '`{"items": [...]}`.',
)
_REPLAYED: dict[int | str, dict[str, Any]] = {
    200: {
        "model": FeedbackResult,
        "description": "A retry of a post that already landed (same Idempotency-Key and "
        "labels): nothing was appended; the body repeats where the labels are.",
        "headers": {
            "Idempotent-Replayed": {
                "description": "`true`: this answers an earlier post.",
                "schema": {"type": "string"},
            }
        },
    }
}


def _key_header() -> Any:
    return Header(
        default=None,
        description="Makes a retried post land once: a post with a key already landed gets "
        "the first answer again (200, `replayed`).",
        json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN.pattern, "maxLength": 200},
    )


async def _add(
    request: Request,
    response: Response,
    ctx: Ctx,
    actor: str,
    project: str,
    name: str,
    body: FeedbackItem | FeedbackBatch,
    key: str | None,
) -> FeedbackResult:
    result = await feedback.add(
        ctx.store, get_running(request).records, project, name, body, key=key, actor=actor
    )
    if result.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return result


@router.post("/deployments/{name}/feedback", status_code=201, responses=_REPLAYED)
async def add_feedback(
    request: Request,
    response: Response,
    ctx: Ctx,
    actor: Actor,
    name: str = NAME,
    body: FeedbackItem | FeedbackBatch = BODY,
    idempotency_key: str | None = _key_header(),
) -> FeedbackResult:
    """Send the true label of served predictions, by inference id (the default project).

    The labels are answered once durably committed to the deployment's feedback table;
    404 when the deployment does not exist.
    """
    return await _add(request, response, ctx, actor, DEFAULT_PROJECT, name, body, idempotency_key)


@router.post(
    "/api/v1/projects/{project}/deployments/{name}/feedback", status_code=201, responses=_REPLAYED
)
async def add_project_feedback(
    request: Request,
    response: Response,
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    name: str = NAME,
    body: FeedbackItem | FeedbackBatch = BODY,
    idempotency_key: str | None = _key_header(),
) -> FeedbackResult:
    """Send the true label of served predictions, by inference id.

    The labels are answered once durably committed to the deployment's feedback table;
    404 when the project or the deployment does not exist.
    """
    return await _add(request, response, ctx, actor, project, name, body, idempotency_key)
