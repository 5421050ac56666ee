"""The pipelines pages: a project's pipelines, schedules, triggers and recent runs
(``/pipelines``), one pipeline with its DAG, spec and run form
(``/pipelines/{project}/{pipeline}``), and one run with its DAG coloured by step state,
its steps and their logs (``/pipelines/{project}/runs/{run_id}``).

Reads need the viewer role; running, cancelling and pausing or resuming a schedule or a
trigger need the editor role, as ``POST .../pipelines/{name}/runs``, ``POST .../cancel``
and ``PATCH .../schedules/{name}`` do. They call the same services as the API's routes
(``loopml.pipelines.service``, ``loopml.pipelines.automation_service``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from loopml.core.auth import Role
from loopml.core.automation import Schedule, Trigger
from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.pipelines import Pipeline, PipelineRun, PipelineVersion, RunStatus
from loopml.faces.context import AppContext
from loopml.pipelines import automation_service as automation
from loopml.pipelines import service
from loopml.pipelines.parse import parse_spec
from loopml.portal.pages._dag import Dag, layout
from loopml.portal.pages._picking import pick, remember, remembered
from loopml.portal.viewer import (
    FORM_PREFIX,
    PageRoute,
    Viewer,
    ViewerDep,
    check_form,
    context_of,
    read_only,
    redirect,
    render,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)
RUNS = 50
"""Runs listed per page."""
LOG_TAIL = 64 * 1024
"""The last bytes of a step's log shown on the run page."""
MAX_INPUTS_CHARS = 64 * 1024
"""The longest inputs text the run form takes."""
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


def _quoted(text: str) -> str:
    return quote(text, safe="")


@dataclass
class PipelinesView:
    """What the pipelines page shows for one project."""

    project: str | None
    projects: list[str]
    pipelines: list[Pipeline] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    runs: list[PipelineRun] = field(default_factory=list)
    next_cursor: str | None = None


def gather(
    ctx: AppContext,
    viewer: Viewer,
    asked: str | None,
    cursor: str | None,
    last: str | None = None,
) -> PipelinesView:
    """A project's pipelines, schedules, triggers and one page of runs (blocking)."""
    project, seen = pick(ctx.store, viewer, asked, last)
    made = PipelinesView(project=project, projects=seen)
    if project is None:
        return made
    made.pipelines = service.list_pipelines(ctx.store, project)
    made.schedules = automation.list_schedules(ctx.store, project)
    made.triggers = automation.list_triggers(ctx.store, project)
    page = service.list_runs(ctx.store, project, limit=RUNS, cursor=cursor)
    made.runs, made.next_cursor = page.items, page.next_cursor
    return made


@router.get("/pipelines")
async def pipelines_page(
    request: Request,
    viewer: ViewerDep,
    project: str | None = None,
    cursor: str | None = Query(default=None, max_length=50),
) -> Response:
    """Specs, schedules and triggers (pause and resume) and recent runs."""
    ctx = context_of(request)
    last = remembered(request)
    view = await read_only(request, lambda: gather(ctx, viewer, project, cursor, last))
    editor = view.project is not None and viewer.can(view.project, Role.EDITOR)
    page = render(request, "pipelines.html", viewer, page="pipelines", view=view, editor=editor)
    return remember(page, project)


@dataclass
class PipelineView:
    """One pipeline, one of its versions, its DAG and its recent runs."""

    pipeline: Pipeline
    version: PipelineVersion
    dag: Dag
    inputs: dict[str, Any]
    runs: list[PipelineRun]


def gather_pipeline(ctx: AppContext, project: str, name: str, version: int | None) -> PipelineView:
    """A pipeline's page (blocking)."""
    found, spec = service.get_pipeline(ctx.store, project, name, version)
    parsed = parse_spec(spec.spec)
    inputs = {k: v.default for k, v in parsed.spec.inputs.items()}
    runs = service.list_runs(ctx.store, project, pipeline=name, limit=10).items
    return PipelineView(found, spec, layout(parsed.order, parsed.needs, {}), inputs, runs)


async def _pipeline_page(
    request: Request,
    viewer: Viewer,
    project: str,
    name: str,
    version: int | None = None,
    *,
    inputs_text: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    ctx = context_of(request)
    view = await read_only(request, lambda: gather_pipeline(ctx, project, name, version))
    if inputs_text is None:
        inputs_text = json.dumps(view.inputs, indent=2)
    return render(
        request, "pipeline.html", viewer, status_code=status_code, page="pipelines",
        project=project, view=view, editor=viewer.can(project, Role.EDITOR),
        inputs_text=inputs_text, error=error,
    )  # fmt: skip


@router.get("/pipelines/{project}/{name}")
async def pipeline_page(
    request: Request,
    viewer: ViewerDep,
    project: str,
    name: str,
    version: int | None = Query(default=None, ge=1),
) -> Response:
    """One pipeline: its versions, the DAG of its spec, the spec and the run form."""
    viewer.require(project)
    return await _pipeline_page(request, viewer, project, name, version)


def parse_inputs(text: str) -> dict[str, Any]:
    """The run form's inputs: a JSON object (empty text is no inputs).

    Raises:
        ValidationError: not JSON, not an object, or too long.
    """
    if len(text) > MAX_INPUTS_CHARS:
        raise ValidationError(f"the inputs are longer than {MAX_INPUTS_CHARS} characters")
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"the inputs are not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if not isinstance(value, dict):
        raise ValidationError('the inputs must be a JSON object, as in {"who": "ada"}')
    return value


@router.post(FORM_PREFIX + "pipelines/{project}/{name}/run")
async def run_pipeline(request: Request, viewer: ViewerDep, project: str, name: str) -> Response:
    """Queue a run with the form's inputs (editor); bad inputs show the form again (422)."""
    form = await request.form()
    check_form(viewer, form)
    viewer.require(project, Role.EDITOR)
    ctx = context_of(request)
    text = str(form.get("inputs") or "")
    try:
        inputs = parse_inputs(text)
        run = await anyio.to_thread.run_sync(
            lambda: service.start_run(ctx.store, project, name, inputs, actor=viewer.actor)
        )
    except ValidationError as exc:
        return await _pipeline_page(
            request, viewer, project, name, inputs_text=text, error=exc.message, status_code=422
        )
    return redirect(f"/pipelines/{_quoted(project)}/runs/{_quoted(run.id)}")


@dataclass
class PipelineRunView:
    """One run: its DAG by step state, and the log of the step asked for."""

    run: PipelineRun
    dag: Dag
    step: str | None = None
    log: str | None = None
    log_error: str | None = None
    log_cut: bool = False


def gather_run(ctx: AppContext, project: str, run_id: str, step: str | None) -> PipelineRunView:
    """A run's page (blocking): the log is the last ``LOG_TAIL`` bytes of the step's newest
    attempt, read as the API's step log route reads it."""
    run = service.get_run(ctx.store, project, run_id)
    steps = run.steps or []
    needs = {s.name: s.needs for s in steps}
    states = {s.name: s.status.value for s in steps}
    made = PipelineRunView(run=run, dag=layout([s.name for s in steps], needs, states), step=step)
    if step is not None:
        try:
            _, data = service.read_log(ctx.store, ctx.artifacts, project, run_id, step)
        except NotFoundError as exc:
            made.log_error = exc.message
        else:
            made.log_cut = len(data) > LOG_TAIL
            made.log = data[-LOG_TAIL:].decode("utf-8", "replace")
    return made


@router.get("/pipelines/{project}/runs/{run_id}")
async def run_page(
    request: Request,
    viewer: ViewerDep,
    project: str,
    run_id: str,
    step: str | None = Query(default=None, max_length=63),
) -> Response:
    """A run: DAG coloured by step state, steps with states and durations, a step's log,
    and a cancel button while it is queued or running (editor)."""
    return await _run(request, viewer, project, run_id, step, "pipeline_run.html")


@router.get("/pipelines/{project}/runs/{run_id}/live")
async def run_fragment(
    request: Request,
    viewer: ViewerDep,
    project: str,
    run_id: str,
    step: str | None = Query(default=None, max_length=63),
) -> Response:
    """The run page's live part as an HTML fragment (state, steps, the step's log), which
    the page fetches every 2 s while the run is not finished; once it is, the fragment
    stops asking."""
    return await _run(request, viewer, project, run_id, step, "_run_live.html")


async def _run(
    request: Request, viewer: Viewer, project: str, run_id: str, step: str | None, template: str
) -> Response:
    viewer.require(project)
    ctx = context_of(request)
    view = await read_only(request, lambda: gather_run(ctx, project, run_id, step))
    status = view.run.status
    return render(
        request, template, viewer, page="pipelines", project=project, view=view,
        live=not status.finished, can_cancel=status in ACTIVE and viewer.can(project, Role.EDITOR),
    )  # fmt: skip


@router.post(FORM_PREFIX + "pipelines/{project}/runs/{run_id}/cancel")
async def cancel_run(request: Request, viewer: ViewerDep, project: str, run_id: str) -> Response:
    """Cancel a run (editor), as ``POST .../runs/{run_id}/cancel`` does."""
    check_form(viewer, await request.form())
    viewer.require(project, Role.EDITOR)
    ctx = context_of(request)
    await anyio.to_thread.run_sync(
        lambda: service.cancel_run(ctx.store, project, run_id, actor=viewer.actor)
    )
    return redirect(f"/pipelines/{_quoted(project)}/runs/{_quoted(run_id)}")


_SWITCHES = {"pause": False, "resume": True}


async def _switch(
    request: Request, viewer: Viewer, project: str, kind: str, name: str, action: str
) -> Response:
    check_form(viewer, await request.form())
    viewer.require(project, Role.EDITOR)
    if action not in _SWITCHES:
        raise NotFoundError(f"no action {action!r}: pause or resume")
    ctx = context_of(request)
    update = automation.update_schedule if kind == "schedules" else automation.update_trigger
    enabled = _SWITCHES[action]
    await anyio.to_thread.run_sync(
        lambda: update(ctx.store, project, name, actor=viewer.actor, enabled=enabled)
    )
    return redirect(f"/pipelines?project={_quoted(project)}#{kind}-h")


@router.post(FORM_PREFIX + "pipelines/{project}/schedules/{name}/{action}")
async def switch_schedule(
    request: Request, viewer: ViewerDep, project: str, name: str, action: str
) -> Response:
    """Pause or resume a schedule (editor), as ``PATCH .../schedules/{name}`` does."""
    return await _switch(request, viewer, project, "schedules", name, action)


@router.post(FORM_PREFIX + "pipelines/{project}/triggers/{name}/{action}")
async def switch_trigger(
    request: Request, viewer: ViewerDep, project: str, name: str, action: str
) -> Response:
    """Pause or resume a trigger (editor), as ``PATCH .../triggers/{name}`` does."""
    return await _switch(request, viewer, project, "triggers", name, action)
