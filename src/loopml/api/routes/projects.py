"""/api/v1/projects"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from loopml import projects
from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import (
    ERROR_RESPONSES,
    NAME_SCHEMA,
    ProjectCreate,
    ProjectUpdate,
    project_path,
)
from loopml.core.types import Page, Project
from loopml.faces.authz import principal_of
from loopml.faces.context import Actor, Ctx

router = APIRouter(
    route_class=StrictJSONRoute,
    prefix="/api/v1/projects",
    tags=["projects"],
    responses=ERROR_RESPONSES,
)
NAME = project_path()


@router.post("", status_code=201)
def create_project(body: ProjectCreate, ctx: Ctx, actor: Actor) -> Project:
    """Create a project."""
    return projects.create(ctx.store, body.name, description=body.description, actor=actor)


@router.get("")
def list_projects(
    request: Request,
    ctx: Ctx,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = Query(
        default=None,
        max_length=63,
        description="The next_cursor of the previous page.",
        json_schema_extra=NAME_SCHEMA,
    ),
) -> Page[Project]:
    """List projects by name, a page at a time (with authentication on, only those the caller
    has a role in, so a page may hold fewer than `limit`)."""
    page = projects.list_(ctx.store, limit=limit, cursor=cursor)
    caller = principal_of(request)
    if caller is None or caller.platform_admin:
        return page
    visible = [p for p in page.items if p.name in caller.roles]
    return Page[Project](items=visible, next_cursor=page.next_cursor)


@router.get("/{name}")
def get_project(ctx: Ctx, name: str = NAME) -> Project:
    """One project."""
    return projects.get(ctx.store, name)


@router.patch("/{name}")
def update_project(body: ProjectUpdate, ctx: Ctx, actor: Actor, name: str = NAME) -> Project:
    """Change a project's description."""
    return projects.update(ctx.store, name, description=body.description, actor=actor)


@router.delete("/{name}", status_code=204)
def delete_project(ctx: Ctx, actor: Actor, name: str = NAME) -> Response:
    """Delete a project and its artifacts. The default project cannot be deleted."""
    projects.delete(ctx.store, ctx.artifacts, name, actor=actor)
    return Response(status_code=204)
