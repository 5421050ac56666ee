"""Pipelines behind the API, and the embedded worker ``loopml up`` starts."""

from __future__ import annotations

from loopml.api.context import AppContext
from loopml.api.schemas_pipelines import PipelineDetail, PipelineRunPage, RunRequest
from loopml.core.pipelines import Pipeline, PipelineApplied, PipelineRun, RunStatus, StepAttempt
from loopml.pipelines import service
from loopml.pipelines.worker import Worker, WorkerThread, server_url
from loopml.store import pipelines as repo


def apply(ctx: AppContext, project: str, spec: str, actor: str) -> PipelineApplied:
    """Check a spec and store it as its pipeline's next version."""
    return service.apply_spec(ctx.store, project, spec, actor=actor)


def list_(ctx: AppContext, project: str) -> list[Pipeline]:
    """A project's pipelines."""
    with ctx.store.session() as session:
        return repo.list_(session, project)


def get(ctx: AppContext, project: str, name: str, version: int | None) -> PipelineDetail:
    """A pipeline with one version's spec."""
    with ctx.store.session() as session:
        found = repo.get(session, project, name)
        spec, _, _ = repo.get_version(session, project, name, version)
    return PipelineDetail(pipeline=found, version=spec)


def run(ctx: AppContext, project: str, name: str, body: RunRequest, actor: str) -> PipelineRun:
    """Queue a run."""
    return service.start_run(
        ctx.store, project, name, body.inputs, version=body.version, actor=actor
    )


def runs(
    ctx: AppContext,
    project: str,
    pipeline: str | None,
    status: RunStatus | None,
    limit: int,
    cursor: str | None,
) -> PipelineRunPage:
    """A project's runs, newest first."""
    page = service.list_runs(
        ctx.store, project, pipeline=pipeline, status=status, limit=limit, cursor=cursor
    )
    return PipelineRunPage(items=page.items, next_cursor=page.next_cursor)


def get_run(ctx: AppContext, project: str, run_id: str) -> PipelineRun:
    """One run with its steps."""
    return service.get_run(ctx.store, project, run_id)


def cancel(ctx: AppContext, project: str, run_id: str, actor: str) -> PipelineRun:
    """Cancel a run."""
    return service.cancel_run(ctx.store, project, run_id, actor=actor)


def log(
    ctx: AppContext, project: str, run_id: str, step: str, attempt: int | None
) -> tuple[StepAttempt, bytes]:
    """A step attempt's log."""
    return service.read_log(ctx.store, ctx.artifacts, project, run_id, step, attempt)


def start_worker(ctx: AppContext) -> WorkerThread:
    """The pipeline worker embedded in the server (``loopml up``), in a background thread."""
    # Steps that act through the API (deploy) call this very server, whatever client.url says.
    worker = Worker(ctx.store, ctx.artifacts, ctx.settings, api_url=server_url(ctx.settings))
    return WorkerThread(worker).start()
