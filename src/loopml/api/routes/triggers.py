"""Triggers under /api/v1/projects/{project}/triggers, and their webhook at
/api/v1/triggers/{trigger_id}/fire (not project-scoped: the id is unguessable and the call
carries the trigger's secret)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.automation import (
    FireResult,
    FiringList,
    TriggerCreate,
    TriggerList,
    TriggerPatch,
    automation_path,
    trigger_id_path,
)
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.core.automation import FiringOutcome, Trigger
from loopml.faces.context import Actor, Ctx
from loopml.pipelines import automation_service as svc

TRIGGERS = "/api/v1/projects/{project}/triggers"
FIRE = "/api/v1/triggers/{trigger_id}/fire"
router = APIRouter(route_class=StrictJSONRoute, tags=["triggers"], responses=ERROR_RESPONSES)
PROJECT = project_path("The project that owns the triggers.")
NAME = automation_path("trigger")

# Alike in shape to routes/schedules.py, kept apart for the reasons given there.


@router.post(TRIGGERS, status_code=201, response_model_exclude_none=True)
def create_trigger(body: TriggerCreate, ctx: Ctx, actor: Actor, project: str = PROJECT) -> Trigger:
    """Start a run of `pipeline` when an event of kind `on` passes `where` (after
    `min_rows` appended rows for table.appended), or when its webhook is called. It reacts
    to events from now on. A webhook trigger's answer carries its `secret`, shown once."""
    return svc.create_trigger(ctx.store, project, **body.model_dump(), actor=actor)


@router.get(TRIGGERS)
def list_triggers(ctx: Ctx, project: str = PROJECT) -> TriggerList:
    """A project's triggers, by name."""
    return TriggerList(items=svc.list_triggers(ctx.store, project))


@router.get(TRIGGERS + "/{name}")
def get_trigger(ctx: Ctx, project: str = PROJECT, name: str = NAME) -> Trigger:
    """One trigger (its secret is never shown again)."""
    return svc.get_trigger(ctx.store, project, name)


@router.patch(TRIGGERS + "/{name}")
def update_trigger(
    body: TriggerPatch, ctx: Ctx, actor: Actor, project: str = PROJECT, name: str = NAME
) -> Trigger:
    """Pause or resume a trigger, or change its filter, `min_rows`, inputs or concurrency.
    Resuming starts from the newest event: events while paused are not replayed."""
    fields = body.model_dump(exclude_unset=True)
    fields = {k: v for k, v in fields.items() if v is not None or k == "min_rows"}
    return svc.update_trigger(ctx.store, project, name, actor=actor, **fields)


@router.delete(TRIGGERS + "/{name}", status_code=204)
def delete_trigger(ctx: Ctx, actor: Actor, project: str = PROJECT, name: str = NAME) -> Response:
    """Delete a trigger and its history; the runs it started stay."""
    svc.delete_trigger(ctx.store, project, name, actor=actor)
    return Response(status_code=204)


@router.get(TRIGGERS + "/{name}/history")
def trigger_history(
    ctx: Ctx,
    project: str = PROJECT,
    name: str = NAME,
    limit: int = Query(default=50, ge=1, le=1000),
) -> FiringList:
    """The trigger's firings, newest first: the event, the run it started, or why none."""
    return FiringList(items=svc.trigger_history(ctx.store, project, name, limit))


async def _raw_body(request: Request) -> bytes:
    # The webhook decodes its body itself, after the secret is checked: a caller without
    # the secret learns nothing from how its body would be judged.
    return await request.body()


_FIRE_BODY = {
    "requestBody": {
        "required": False,
        "description": "Any JSON object; kept with the firing.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


@router.post(FIRE, status_code=202, response_model_exclude_none=True, openapi_extra=_FIRE_BODY)
def fire_trigger(
    ctx: Ctx,
    trigger_id: str = trigger_id_path(),
    secret: str | None = Header(
        default=None,
        alias="X-Loopml-Secret",
        max_length=200,
        description="The secret shown when the webhook trigger was created.",
    ),
    payload: bytes = Depends(_raw_body),
) -> FireResult:
    """Fire a webhook trigger: 202 with the run it started, or why it started none (its
    concurrency policy, or it is paused). A missing or wrong secret is refused (403)."""
    firing = svc.fire_webhook(ctx.store, trigger_id, secret, payload)
    return FireResult(
        outcome=firing.outcome.value,
        run_id=firing.run_id,
        skipped=firing.reason if firing.outcome == FiringOutcome.SKIPPED else None,
        queued=firing.reason if firing.outcome == FiringOutcome.QUEUED else None,
    )
