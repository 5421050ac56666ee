"""/api/v1/projects/{project}/transforms: named SQL transforms, their runs and lineage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query, Response

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, ErrorBody, project_path
from loopml.api.schemas.transforms import (
    TransformApply,
    TransformDefine,
    TransformList,
    TransformRunPage,
    transform_path,
)
from loopml.core.lake import TABLE_NAME_PATTERN
from loopml.core.transforms import CURSOR_PATTERN, Transform, TransformLineage, TransformRun
from loopml.data import transforms
from loopml.faces.context import Actor, Ctx

PREFIX = "/api/v1/projects/{project}/transforms"
router = APIRouter(
    route_class=StrictJSONRoute, prefix=PREFIX, tags=["transforms"], responses=ERROR_RESPONSES
)
PROJECT = project_path("The project that owns the transforms.")
NAME = transform_path()
_SQL_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such project, transform, or table (version)."},
    422: {
        "model": ErrorBody,
        "description": "A bad definition, SQL refused by the sandbox or failing "
        "(`validation_error`), or a query past its time limit (`query_timeout`).",
    },
}


@router.get("")
def list_transforms(ctx: Ctx, project: str = PROJECT) -> TransformList:
    """A project's transforms, by name."""
    return TransformList(items=transforms.list_transforms(ctx.store, project))


# Declared before /{name}, which would otherwise take it: 'lineage' is a reserved name.
@router.get("/lineage")
def table_lineage(
    ctx: Ctx,
    project: str = PROJECT,
    table: str = Query(
        max_length=63,
        description="The table whose version to trace.",
        json_schema_extra={"pattern": TABLE_NAME_PATTERN.pattern},
    ),
    version: int | None = Query(
        default=None, ge=0, le=2**31 - 1, description="The version; the current one if omitted."
    ),
) -> TransformLineage:
    """Where a table version came from: the run that wrote it, then the runs that wrote that
    run's inputs, back to the versions that came in by ingest (``sources``)."""
    return transforms.lineage(ctx.store, ctx.artifacts, project, table, version)


@router.get("/{name}")
def get_transform(ctx: Ctx, project: str = PROJECT, name: str = NAME) -> Transform:
    """A transform's definition: its SQL, output table, mode and revision."""
    return transforms.get_transform(ctx.store, project, name)


@router.put("/{name}", responses=_SQL_ERRORS)
def define_transform(
    body: TransformDefine, ctx: Ctx, actor: Actor, project: str = PROJECT, name: str = NAME
) -> Transform:
    """Define a transform, or change it, without running it.

    The SQL is checked by the sandbox now; the tables it reads need not exist until it is
    applied. A change of SQL, table or mode adds one to ``revision``.
    """
    return transforms.define(
        ctx.store,
        project,
        name,
        sql=body.sql,
        into=body.into,
        mode=body.mode,
        description=body.description,
        actor=actor,
    )


@router.post("/{name}/apply", status_code=201, responses=_SQL_ERRORS)
def apply_transform(
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    name: str = NAME,
    body: TransformApply | None = Body(default=None),
) -> TransformRun:
    """Run a transform: materialize its SQL into its table, and record the run with the exact
    input versions it read and the output version it wrote.

    Fields in the body change the definition first (the first apply needs ``sql`` and
    ``into``); without a body the saved definition runs. A refused query or failed write
    records nothing and keeps the definition as it was.
    """
    body = body or TransformApply()
    return transforms.apply(
        ctx.store,
        ctx.artifacts,
        project,
        name,
        sql=body.sql,
        into=body.into,
        mode=body.mode,
        description=body.description,
        actor=actor,
        lake_settings=ctx.settings.lake,
        timeout_s=body.timeout_s,
    )


@router.get("/{name}/runs")
def list_runs(
    ctx: Ctx,
    project: str = PROJECT,
    name: str = NAME,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = Query(
        default=None,
        max_length=50,
        pattern=CURSOR_PATTERN.pattern,
        description="The next_cursor of the previous page.",
    ),
) -> TransformRunPage:
    """A transform's runs, newest first."""
    page = transforms.runs(ctx.store, project, name, limit=limit, cursor=cursor)
    return TransformRunPage(items=page.items, next_cursor=page.next_cursor)


@router.delete("/{name}", status_code=204)
def delete_transform(ctx: Ctx, actor: Actor, project: str = PROJECT, name: str = NAME) -> Response:
    """Delete a transform and its run history; the tables it wrote stay."""
    transforms.delete(ctx.store, project, name, actor=actor)
    return Response(status_code=204)
