"""``/api/2.0/mlflow-artifacts/artifacts``: MLflow's proxied artifact upload, download,
listing and deletion (``HttpArtifactRepository`` in MLflow's client)."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from loopml.api.mlflow import artifacts
from loopml.api.mlflow._route import MlflowRoute, Project
from loopml.api.routes.artifacts import artifact_headers
from loopml.faces.context import Ctx
from loopml.faces.streaming import blocking_chunks

router = APIRouter(route_class=MlflowRoute)
FILE = "/artifacts/{path:path}"


@router.get("/artifacts")
def list_artifacts(
    ctx: Ctx, project: Project, path: str = Query(default="", max_length=1100)
) -> dict[str, Any]:
    """The files and folders directly inside ``path``."""
    return artifacts.list_folder(ctx, project, path)


@router.put(FILE)
async def upload(request: Request, path: str, ctx: Ctx, project: Project) -> dict[str, Any]:
    """The raw body becomes the file ``path`` (streamed, hashed, atomic)."""
    chunks = blocking_chunks(request.stream())
    await anyio.to_thread.run_sync(artifacts.upload, ctx, project, path, chunks)
    return {}


@router.get(FILE)
def download(path: str, ctx: Ctx, project: Project) -> StreamingResponse:
    """The file's bytes."""
    info, chunks = artifacts.download(ctx, project, path)
    return StreamingResponse(
        chunks, media_type="application/octet-stream", headers=artifact_headers(info)
    )


@router.delete(FILE)
def delete(path: str, ctx: Ctx, project: Project) -> dict[str, Any]:
    """Delete a file, or a folder and everything in it."""
    return artifacts.delete(ctx, project, path)
