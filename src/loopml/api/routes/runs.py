"""/api/v1/projects/{project}/runs: runs, what they log, their files and logged models."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.convertors import Convertor, register_url_convertor

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.routes.artifacts import artifact_headers
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.api.schemas.tracking import (
    LogBatch,
    LoggedModelCreate,
    RunCreate,
    RunSearch,
    RunUpdate,
    run_id_path,
)
from loopml.core.keys import KEY_PATTERN, PREFIX_PATTERN
from loopml.core.runs import KEY_PATTERN as METRIC_KEY_PATTERN
from loopml.core.runs import LoggedModel, MetricPoint, Run
from loopml.core.types import Artifact, Page
from loopml.faces.context import Actor, Ctx
from loopml.faces.streaming import blocking_chunks
from loopml.train import tracking
from loopml.train.tracking import artifacts as run_artifacts


class RunIdConvertor(Convertor[str]):
    """``{run_id:run_id}`` matches only run ids, so ``/runs/search`` is never read as a run:
    ``PATCH /runs/search`` is a 405, not a run lookup."""

    regex = "[0-9a-f]{32}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("run_id", RunIdConvertor())

router = APIRouter(
    route_class=StrictJSONRoute,
    prefix="/api/v1/projects/{project}/runs",
    tags=["runs"],
    responses=ERROR_RESPONSES,
)
ARTIFACT = "/{run_id:run_id}/artifacts/{path:path}"
PROJECT = project_path("The project that owns the runs.")
RUN_ID = run_id_path()
PATH = Path(
    description="The file's path in the run's artifacts, such as 'model/model.onnx'.",
    json_schema_extra={"pattern": KEY_PATTERN},
)
_BINARY: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The artifact's bytes (headers only for HEAD).",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post("", status_code=201)
def create_run(body: RunCreate, ctx: Ctx, actor: Actor, project: str = PROJECT) -> Run:
    """Start a RUNNING run; its first params, tags and inputs are logged with it."""
    batch = LogBatch(params=body.params, tags=body.tags, inputs=body.inputs)
    return tracking.start_run(
        ctx.store,
        project,
        body.experiment,
        heartbeat_timeout_s=body.heartbeat_timeout_s or ctx.settings.tracking.heartbeat_timeout_s,
        actor=actor,
        name=body.name,
        code_version=dict(body.code_version),
        parent_run_id=body.parent_run_id,
        batch=batch,
        create_experiment=body.create_experiment,
    )


@router.post("/search")
def search_runs(body: RunSearch, ctx: Ctx, project: str = PROJECT) -> Page[Run]:
    """Runs filtered and sorted by latest metrics, params, tags and attributes; a page."""
    return tracking.search_runs(ctx.store, project, body)


@router.get("/{run_id:run_id}")
def get_run(ctx: Ctx, project: str = PROJECT, run_id: str = RUN_ID) -> Run:
    """One run with its params, latest metrics, tags and inputs."""
    return tracking.get_run(ctx.store, project, run_id)


@router.patch("/{run_id:run_id}")
def end_run(
    body: RunUpdate, ctx: Ctx, actor: Actor, project: str = PROJECT, run_id: str = RUN_ID
) -> Run:
    """End a run as FINISHED, FAILED or KILLED (repeating the same status is harmless)."""
    return tracking.end_run(ctx.store, project, run_id, body.status, actor=actor)


@router.delete("/{run_id:run_id}", status_code=204)
def delete_run(ctx: Ctx, actor: Actor, project: str = PROJECT, run_id: str = RUN_ID) -> Response:
    """Delete a run, its child runs, what they logged and their files.

    Refused (409) while a registered model version comes from one of them.
    """
    tracking.delete_run(ctx.store, ctx.artifacts, project, run_id, actor=actor)
    return Response(status_code=204)


@router.post("/{run_id:run_id}/log-batch", status_code=204)
def log_batch(body: LogBatch, ctx: Ctx, project: str = PROJECT, run_id: str = RUN_ID) -> Response:
    """Log params, metric points, tags and inputs in one transaction: all or nothing."""
    tracking.log_batch(ctx.store, project, run_id, body)
    return Response(status_code=204)


@router.post("/{run_id:run_id}/heartbeat", status_code=204)
def heartbeat(ctx: Ctx, project: str = PROJECT, run_id: str = RUN_ID) -> Response:
    """Keep a RUNNING run alive; 409 once it ended or was marked LOST."""
    tracking.heartbeat(ctx.store, project, run_id)
    return Response(status_code=204)


@router.get("/{run_id:run_id}/metric-history")
def metric_history(
    ctx: Ctx,
    project: str = PROJECT,
    run_id: str = RUN_ID,
    key: str = Query(max_length=250, pattern=METRIC_KEY_PATTERN),
    limit: int = Query(default=1000, ge=1, le=1000),
    cursor: str | None = Query(default=None, max_length=9, pattern=r"^[0-9]{1,9}$"),
) -> Page[MetricPoint]:
    """A metric's points in step order, a page at a time."""
    return tracking.metric_history(ctx.store, project, run_id, key, limit=limit, cursor=cursor)


@router.post("/{run_id:run_id}/models", status_code=201)
def record_model(
    body: LoggedModelCreate, ctx: Ctx, project: str = PROJECT, run_id: str = RUN_ID
) -> LoggedModel:
    """Record a model package the run stored under its artifacts at ``path``.

    The package's manifest must be there and hash to ``manifest_sha256``.
    """
    return run_artifacts.record_model(
        ctx.store, ctx.artifacts, project, run_id, **body.model_dump()
    )


@router.get("/{run_id:run_id}/models")
def list_models(ctx: Ctx, project: str = PROJECT, run_id: str = RUN_ID) -> list[LoggedModel]:
    """The models a run logged."""
    return run_artifacts.list_models(ctx.store, project, run_id)


@router.get("/{run_id:run_id}/artifacts")
def list_artifacts(
    ctx: Ctx,
    project: str = PROJECT,
    run_id: str = RUN_ID,
    prefix: str = Query(default="", max_length=1024, json_schema_extra={"pattern": PREFIX_PATTERN}),
    cursor: str | None = Query(default=None, max_length=1024),
    limit: int = Query(default=100, ge=1, le=1000),
) -> Page[Artifact]:
    """A run's files under ``prefix`` (a folder), by path."""
    return run_artifacts.list_(
        ctx.store, ctx.artifacts, project, run_id, prefix=prefix, limit=limit, cursor=cursor
    )


@router.put(ARTIFACT, status_code=201)
async def upload_artifact(
    request: Request, ctx: Ctx, project: str = PROJECT, run_id: str = RUN_ID, path: str = PATH
) -> Artifact:
    """Upload the raw request body as the run's file ``path`` (streamed, hashed, atomic)."""
    chunks = blocking_chunks(request.stream())
    return await anyio.to_thread.run_sync(
        run_artifacts.write, ctx.store, ctx.artifacts, project, run_id, path, chunks
    )


@router.get(ARTIFACT, response_class=StreamingResponse, responses=_BINARY)
def download_artifact(
    ctx: Ctx, project: str = PROJECT, run_id: str = RUN_ID, path: str = PATH
) -> StreamingResponse:
    """Download one of the run's files as an attachment."""
    info, chunks = run_artifacts.open_chunks(ctx.store, ctx.artifacts, project, run_id, path)
    headers = artifact_headers(info)
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@router.head(ARTIFACT, response_class=Response, responses=_BINARY)
def stat_artifact(
    ctx: Ctx, project: str = PROJECT, run_id: str = RUN_ID, path: str = PATH
) -> Response:
    """A run file's size and checksum in the headers, without the body."""
    info = run_artifacts.stat(ctx.store, ctx.artifacts, project, run_id, path)
    return Response(media_type="application/octet-stream", headers=artifact_headers(info))
