"""Codesets under /api/v1/projects/{project}/codesets (register, list, read, download, the
webhook's settings), and the push webhook at /api/v1/codesets/{codeset_id}/push (not
project-scoped: the id is unguessable and the call carries the codeset's secret)."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.codesets import (
    CodesetList,
    CodesetVersionList,
    PushAnswer,
    WebhookSet,
    codeset_id_path,
    codeset_path,
)
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.core.codesets import (
    COMMIT_PATTERN,
    MAX_SOURCE_CHARS,
    Codeset,
    CodesetRegistered,
    CodesetVersion,
    CodesetWebhook,
)
from loopml.core.errors import PayloadTooLargeError
from loopml.faces.context import Actor, AppContext, Ctx
from loopml.pipelines import codesets as svc

CODESETS = "/api/v1/projects/{project}/codesets"
PUSH = "/api/v1/codesets/{codeset_id}/push"
router = APIRouter(route_class=StrictJSONRoute, tags=["codesets"], responses=ERROR_RESPONSES)
PROJECT = project_path("The project that owns the codesets.")
NAME = codeset_path()
VERSION = Path(ge=1, le=10**9, description="A version number.")
_ARCHIVE_BODY = {
    "requestBody": {
        "required": True,
        "description": "A tar or tar.gz archive of regular files (what `loopml codesets "
        "register` packs).",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_PUSH_BODY = {
    "requestBody": {
        "required": True,
        "description": "A GitHub- or GitLab-style push event: `ref` and `after`.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}
_MADE: dict[int | str, dict[str, Any]] = {
    200: {"model": CodesetRegistered, "description": "Already a version (`created` false)."},
    201: {"model": CodesetRegistered, "description": "A new version (`created` true)."},
}
_ARCHIVE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The version's files as a tar.gz archive.",
        "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def is_upload_path(path: str) -> bool:
    """Whether ``path`` takes a codeset archive (``.../projects/{p}/codesets/{name}/versions``:
    a raw body, under the upload size limit)."""
    parts = path.split("/")
    return (
        len(parts) == 8
        and parts[1:4] == ["api", "v1", "projects"]
        and parts[5] == "codesets"
        and parts[7] == "versions"
    )


async def _read_limited(request: Request, ctx: AppContext) -> bytes:
    settings = ctx.settings.codesets
    # The archive holds at most max_bytes of files plus a header or two (512 bytes each)
    # per file; compressed it is smaller still.
    limit = settings.max_bytes + 1024 * settings.max_files + 1024 * 1024
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLargeError(
                f"a codeset archive may be at most {limit} bytes (codesets.max_bytes of files)",
                details={"max_bytes": settings.max_bytes},
            )
    return bytes(body)


@router.post(
    CODESETS + "/{name}/versions",
    status_code=201,
    responses=_MADE,
    openapi_extra=_ARCHIVE_BODY,
)
async def register_version(
    request: Request,
    response: Response,
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    name: str = NAME,
    commit: str | None = Query(
        default=None,
        pattern=COMMIT_PATTERN.pattern,
        description="The git commit the files were packed from.",
    ),
    source: str = Query(
        default="upload",
        max_length=MAX_SOURCE_CHARS,
        description="Where the files came from (a folder, a repository and ref), as shown.",
    ),
) -> CodesetRegistered:
    """Register the archive in the body as the codeset's next version (201; the codeset is
    created if new), or answer the version that already holds the same files (200, `created`
    false). Files are hashed here; links and other non-file members are refused."""
    data = await _read_limited(request, ctx)
    made = await anyio.to_thread.run_sync(
        lambda: svc.register_archive(
            ctx.store,
            ctx.artifacts,
            ctx.settings.codesets,
            project,
            name,
            data,
            commit=commit,
            source=source,
            actor=actor,
        )
    )
    response.status_code = 201 if made.created else 200
    return made


@router.get(CODESETS)
def list_codesets(ctx: Ctx, project: str = PROJECT) -> CodesetList:
    """A project's codesets with their newest versions, by name."""
    return CodesetList(items=svc.list_codesets(ctx.store, project))


@router.get(CODESETS + "/{name}")
def get_codeset(ctx: Ctx, project: str = PROJECT, name: str = NAME) -> Codeset:
    """A codeset, its newest version, and the repository its webhook reads."""
    return svc.get(ctx.store, project, name)


@router.get(CODESETS + "/{name}/versions")
def list_versions(ctx: Ctx, project: str = PROJECT, name: str = NAME) -> CodesetVersionList:
    """A codeset's versions, newest first (without file lists)."""
    return CodesetVersionList(items=svc.versions(ctx.store, project, name))


@router.get(CODESETS + "/{name}/versions/{version}")
def get_version(
    ctx: Ctx, project: str = PROJECT, name: str = NAME, version: int = VERSION
) -> CodesetVersion:
    """One version with its files (path, size, SHA-256, executable bit)."""
    return svc.version(ctx.store, project, name, version)


@router.get(
    CODESETS + "/{name}/versions/{version}/archive",
    response_class=StreamingResponse,
    responses=_ARCHIVE,
)
def download_archive(
    ctx: Ctx, project: str = PROJECT, name: str = NAME, version: int = VERSION
) -> StreamingResponse:
    """A version's files as one tar.gz (the same bytes for the same files)."""
    found, size, chunks = svc.open_archive(ctx.store, ctx.artifacts, project, name, version)
    filename = f"{name}-{found.version}.tar.gz"
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Content-Length": str(size),
        "X-Content-Type-Options": "nosniff",
        "X-Codeset-Version": str(found.version),
        "X-Codeset-Content-Hash": found.content_hash,
    }
    return StreamingResponse(chunks, media_type="application/gzip", headers=headers)


@router.put(CODESETS + "/{name}/webhook", response_model_exclude_none=True)
def set_webhook(
    body: WebhookSet, ctx: Ctx, actor: Actor, project: str = PROJECT, name: str = NAME
) -> CodesetWebhook:
    """Point the codeset's push webhook at a git repository on the server (under
    codesets.repository_roots) and a branch. The answer carries a new secret, shown once."""
    made = svc.set_webhook(
        ctx.store,
        ctx.settings.codesets,
        project,
        name,
        repository=body.repository,
        branch=body.branch,
        actor=actor,
    )
    assert made is not None  # a repository was given
    return made


@router.delete(CODESETS + "/{name}/webhook", status_code=204)
def delete_webhook(ctx: Ctx, actor: Actor, project: str = PROJECT, name: str = NAME) -> Response:
    """Remove the codeset's webhook: its secret stops working."""
    svc.set_webhook(
        ctx.store, ctx.settings.codesets, project, name, repository=None, branch=None, actor=actor
    )
    return Response(status_code=204)


async def _raw_body(request: Request) -> bytes:
    # Decoded by the service after the secret is checked, as a trigger's webhook does.
    return await request.body()


@router.post(PUSH, status_code=202, response_model_exclude_none=True, openapi_extra=_PUSH_BODY)
def push(
    ctx: Ctx,
    codeset_id: str = codeset_id_path(),
    secret: str | None = Header(
        default=None,
        alias="X-Loopml-Secret",
        max_length=200,
        description="The secret shown when the codeset's webhook was set.",
    ),
    gitlab_token: str | None = Header(
        default=None,
        alias="X-Gitlab-Token",
        max_length=200,
        description="GitLab's name for the same secret.",
    ),
    payload: bytes = Depends(_raw_body),
) -> PushAnswer:
    """A git host's push event: the new commit of the branch the codeset follows is read
    from its repository and registered (202). A missing or wrong secret is refused (403)."""
    done = svc.receive_push(
        ctx.store,
        ctx.artifacts,
        ctx.settings.codesets,
        codeset_id,
        secret or gitlab_token,
        payload,
    )
    return PushAnswer(
        outcome=done.outcome,
        codeset=done.codeset,
        version=done.version,
        commit=done.commit,
        skipped=done.skipped,
    )
