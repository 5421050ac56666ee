"""Schedules under /api/v1/projects/{project}/schedules: cron schedules of pipelines."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.automation import (
    FiringList,
    ScheduleCreate,
    ScheduleList,
    SchedulePatch,
    automation_path,
)
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.core.automation import Schedule
from loopml.faces.context import Actor, Ctx
from loopml.pipelines import automation_service as svc

SCHEDULES = "/api/v1/projects/{project}/schedules"
router = APIRouter(route_class=StrictJSONRoute, tags=["schedules"], responses=ERROR_RESPONSES)
PROJECT = project_path("The project that owns the schedules.")
NAME = automation_path("schedule")

# Alike in shape to routes/triggers.py, and kept apart (docs/pipelines.md, "One automation
# model, two nouns"): each route is its own documented operation calling its own service
# function, and the patches differ (a trigger's null min_rows clears it; a schedule's null
# fields are left as they are).


@router.post(SCHEDULES, status_code=201)
def create_schedule(
    body: ScheduleCreate, ctx: Ctx, actor: Actor, project: str = PROJECT
) -> Schedule:
    """Start a run of `pipeline` at each tick of `cron`, read in `timezone` (DST moves
    the tick in UTC, not on the wall clock). A tick missed while no server ran fires once."""
    return svc.create_schedule(ctx.store, project, **body.model_dump(), actor=actor)


@router.get(SCHEDULES)
def list_schedules(ctx: Ctx, project: str = PROJECT) -> ScheduleList:
    """A project's schedules, by name."""
    return ScheduleList(items=svc.list_schedules(ctx.store, project))


@router.get(SCHEDULES + "/{name}")
def get_schedule(ctx: Ctx, project: str = PROJECT, name: str = NAME) -> Schedule:
    """One schedule, with its next tick and its last run."""
    return svc.get_schedule(ctx.store, project, name)


@router.patch(SCHEDULES + "/{name}")
def update_schedule(
    body: SchedulePatch, ctx: Ctx, actor: Actor, project: str = PROJECT, name: str = NAME
) -> Schedule:
    """Pause or resume a schedule, or change its cron, zone, inputs or concurrency.
    Resuming does not catch up on the ticks missed while paused."""
    fields = body.model_dump(exclude_none=True)
    return svc.update_schedule(ctx.store, project, name, actor=actor, **fields)


@router.delete(SCHEDULES + "/{name}", status_code=204)
def delete_schedule(ctx: Ctx, actor: Actor, project: str = PROJECT, name: str = NAME) -> Response:
    """Delete a schedule and its history; the runs it started stay."""
    svc.delete_schedule(ctx.store, project, name, actor=actor)
    return Response(status_code=204)


@router.get(SCHEDULES + "/{name}/history")
def schedule_history(
    ctx: Ctx,
    project: str = PROJECT,
    name: str = NAME,
    limit: int = Query(default=50, ge=1, le=1000),
) -> FiringList:
    """The schedule's firings, newest first: the run each started, or why it started none."""
    return FiringList(items=svc.schedule_history(ctx.store, project, name, limit))
