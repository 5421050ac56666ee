"""Pipelines under /api/v1/projects/{project}: apply specs, start, follow and cancel runs,
read step logs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, ErrorBody, log_query, project_path
from loopml.api.schemas.pipelines import (
    PipelineApply,
    PipelineDetail,
    PipelineList,
    PipelineRunPage,
    RunRequest,
    pipeline_path,
    run_path,
    step_path,
)
from loopml.core.logs import LogQuery
from loopml.core.pipelines import (
    CURSOR_PATTERN,
    PIPELINE_NAME_PATTERN,
    PipelineApplied,
    PipelineRun,
    RunStatus,
)
from loopml.core.refs import MAX_VERSION
from loopml.faces.context import Actor, Ctx
from loopml.pipelines import service

PROJECT_PREFIX = "/api/v1/projects/{project}"
PIPELINES = PROJECT_PREFIX + "/pipelines"
RUNS = PROJECT_PREFIX + "/pipeline-runs"
router = APIRouter(route_class=StrictJSONRoute, tags=["pipelines"], responses=ERROR_RESPONSES)
PROJECT = project_path("The project that owns the pipelines.")
NAME = pipeline_path()
RUN = run_path()
STEP = step_path()
_SPEC_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorBody,
        "description": "The spec was refused (`invalid_pipeline_spec`): `details.problems` "
        "lists each problem with its line.",
    },
}
_LOG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "The log."}
}


@router.post(PIPELINES, status_code=201, responses=_SPEC_ERRORS)
def apply_pipeline(
    body: PipelineApply, response: Response, ctx: Ctx, actor: Actor, project: str = PROJECT
) -> PipelineApplied:
    """Apply a spec: check it (cycles, unknown references, type mismatches, each with its
    line) and store it as the next version of the pipeline its `name` names. A spec equal
    to the newest version once normalized is not stored again (200, `created` false)."""
    applied = service.apply_spec(ctx.store, project, body.spec, actor=actor)
    if not applied.created:
        response.status_code = 200
    return applied


@router.get(PIPELINES)
def list_pipelines(ctx: Ctx, project: str = PROJECT) -> PipelineList:
    """A project's pipelines, by name."""
    return PipelineList(items=service.list_pipelines(ctx.store, project))


@router.get(PIPELINES + "/{name}")
def get_pipeline(
    ctx: Ctx,
    project: str = PROJECT,
    name: str = NAME,
    version: int | None = Query(
        default=None, ge=1, le=MAX_VERSION, description="A version; the newest if omitted."
    ),
) -> PipelineDetail:
    """A pipeline and one version's spec."""
    found, spec = service.get_pipeline(ctx.store, project, name, version)
    return PipelineDetail(pipeline=found, version=spec)


@router.post(PIPELINES + "/{name}/runs", status_code=201)
def run_pipeline(
    body: RunRequest, ctx: Ctx, actor: Actor, project: str = PROJECT, name: str = NAME
) -> PipelineRun:
    """Queue a run of the pipeline's newest version (or `version`); workers pick its steps
    up as their inputs become ready."""
    return service.start_run(
        ctx.store, project, name, body.inputs, version=body.version, actor=actor
    )


@router.get(RUNS)
def list_runs(
    ctx: Ctx,
    project: str = PROJECT,
    pipeline: str | None = Query(
        default=None,
        max_length=63,
        description="Only runs of this pipeline.",
        json_schema_extra={"pattern": PIPELINE_NAME_PATTERN.pattern},
    ),
    status: RunStatus | None = Query(default=None, description="Only runs in this status."),
    limit: int = Query(default=50, ge=1, le=1000),
    cursor: str | None = Query(
        default=None,
        max_length=50,
        pattern=CURSOR_PATTERN.pattern,
        description="The next_cursor of the previous page.",
    ),
) -> PipelineRunPage:
    """A project's pipeline runs, newest first."""
    page = service.list_runs(
        ctx.store, project, pipeline=pipeline, status=status, limit=limit, cursor=cursor
    )
    return PipelineRunPage(items=page.items, next_cursor=page.next_cursor)


@router.get(RUNS + "/{run_id}")
def get_run(ctx: Ctx, project: str = PROJECT, run_id: str = RUN) -> PipelineRun:
    """A run with its steps: status, attempts, resolved inputs, outputs and errors."""
    return service.get_run(ctx.store, project, run_id)


@router.post(RUNS + "/{run_id}/cancel")
def cancel_run(ctx: Ctx, actor: Actor, project: str = PROJECT, run_id: str = RUN) -> PipelineRun:
    """Cancel a run: waiting steps are cancelled at once, running ones at their next
    heartbeat (the run is CANCELLING until then). A finished run is left as it is."""
    return service.cancel_run(ctx.store, project, run_id, actor=actor)


@router.get(RUNS + "/{run_id}/steps/{step}/log", response_class=Response, responses=_LOG)
def step_log(
    ctx: Ctx,
    project: str = PROJECT,
    run_id: str = RUN,
    step: str = STEP,
    attempt: int | None = Query(
        default=None, ge=1, le=10_000, description="An attempt; the newest if omitted."
    ),
    query: LogQuery = Depends(log_query),
) -> Response:
    """A step attempt's captured output (stdout, stderr and logging); a running attempt's
    log is what its worker uploaded at its last heartbeat. With `grep` or `level`, only
    the lines that match."""
    found, data = service.read_log(ctx.store, ctx.artifacts, project, run_id, step, attempt, query)
    return Response(
        content=data,
        media_type="text/plain; charset=utf-8",
        headers={
            "X-Content-Type-Options": "nosniff",
            "X-Loopml-Attempt": str(found.attempt),
            "X-Loopml-Attempt-Status": found.status.value,
        },
    )
