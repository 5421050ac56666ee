"""/api/v1/projects/{project}/artifacts: streamed upload and download of files."""

from __future__ import annotations

from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from loopml import projects
from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.routes.tables import is_files_path
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.core.keys import KEY_PATTERN, PREFIX_PATTERN, validate_key
from loopml.core.types import Artifact, Page
from loopml.faces.context import Actor, Ctx
from loopml.faces.streaming import blocking_chunks

PREFIX = "/api/v1/projects/{project}/artifacts"
router = APIRouter(
    route_class=StrictJSONRoute, prefix=PREFIX, tags=["artifacts"], responses=ERROR_RESPONSES
)
PROJECT = project_path("The project that owns the artifacts.")
KEY = Path(
    description="The artifact's key: names joined by '/', such as 'reports/eval.json'.",
    json_schema_extra={"pattern": KEY_PATTERN},
)
_BINARY: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The artifact's bytes (headers only for HEAD).",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def is_upload_path(path: str) -> bool:
    """Whether ``path`` is a file upload route (raw body, upload size limit): a project's
    artifact (``.../projects/{p}/artifacts/{key}``) or a run's
    (``.../projects/{p}/runs/{id}/artifacts/{path}``), or a file ingested into a table
    (``.../projects/{p}/tables/{t}/files``)."""
    if is_files_path(path):
        return True
    parts = path.split("/", 8)
    if len(parts) < 7 or parts[1:4] != ["api", "v1", "projects"]:
        return False
    if parts[5] == "artifacts":
        return True
    return len(parts) == 9 and parts[5] == "runs" and parts[7] == "artifacts"


def artifact_headers(info: Artifact) -> dict[str, str]:
    # Artifacts are user content: never rendered by a browser from our origin (RELIABILITY 14).
    name = quote(info.key.rsplit("/", 1)[-1])
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{name}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Content-Length": str(info.size),
        "Last-Modified": format_datetime(info.modified, usegmt=True),
    }
    if info.sha256:
        headers["ETag"] = f'"{info.sha256}"'
        headers["X-Checksum-SHA256"] = info.sha256
    return headers


@router.get("")
def list_artifacts(
    ctx: Ctx,
    project: str = PROJECT,
    prefix: str = Query(
        default="",
        max_length=1024,
        description="A folder, such as 'reports/'.",
        json_schema_extra={"pattern": PREFIX_PATTERN},
    ),
    cursor: str | None = Query(default=None, max_length=1024),
    limit: int = Query(default=100, ge=1, le=1000),
) -> Page[Artifact]:
    """A project's artifacts under ``prefix`` (a folder), sorted by key."""
    return projects.list_artifacts(ctx.store, ctx.artifacts, project, prefix, limit, cursor)


@router.put("/{key:path}", status_code=201)
async def upload_artifact(
    request: Request, ctx: Ctx, actor: Actor, project: str = PROJECT, key: str = KEY
) -> Artifact:
    """Upload the raw request body as the artifact ``key``; it replaces any older one.

    The body is streamed to the store and hashed on the way (SHA-256, in the answer); nothing
    is visible under ``key`` until the whole body has arrived.
    """
    validate_key(key)
    chunks = blocking_chunks(request.stream())
    return await anyio.to_thread.run_sync(
        lambda: projects.write_artifact(ctx.store, ctx.artifacts, project, key, chunks, actor=actor)
    )


@router.get("/{key:path}", response_class=StreamingResponse, responses=_BINARY)
def download_artifact(ctx: Ctx, project: str = PROJECT, key: str = KEY) -> StreamingResponse:
    """Download an artifact as an attachment."""
    info, chunks = projects.open_artifact(ctx.store, ctx.artifacts, project, key)
    return StreamingResponse(
        chunks, media_type="application/octet-stream", headers=artifact_headers(info)
    )


@router.head("/{key:path}", response_class=Response, responses=_BINARY)
def stat_artifact(ctx: Ctx, project: str = PROJECT, key: str = KEY) -> Response:
    """An artifact's size and checksum in the headers, without the body."""
    info = projects.artifact_info(ctx.store, ctx.artifacts, project, key)
    return Response(media_type="application/octet-stream", headers=artifact_headers(info))


@router.delete("/{key:path}", status_code=204)
def delete_artifact(ctx: Ctx, actor: Actor, project: str = PROJECT, key: str = KEY) -> Response:
    """Delete an artifact."""
    projects.delete_artifact(ctx.store, ctx.artifacts, project, key, actor)
    return Response(status_code=204)
