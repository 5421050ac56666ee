"""Transforms for the API: the data layer, called from the routes' worker threads."""

from __future__ import annotations

from loopml.api.schemas.transforms import TransformApply, TransformDefine, TransformRunPage
from loopml.core.transforms import Transform, TransformLineage, TransformRun
from loopml.data import transforms
from loopml.web.context import AppContext


def list_(ctx: AppContext, project: str) -> list[Transform]:
    """A project's transforms."""
    return transforms.list_transforms(ctx.store, project)


def get(ctx: AppContext, project: str, name: str) -> Transform:
    """One transform."""
    return transforms.get_transform(ctx.store, project, name)


def define(
    ctx: AppContext, project: str, name: str, body: TransformDefine, actor: str
) -> Transform:
    """Create or change a transform without running it (emits ``transform.defined``)."""
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


def apply(
    ctx: AppContext, project: str, name: str, body: TransformApply | None, actor: str
) -> TransformRun:
    """Run a transform, changing its definition first with what the body gives."""
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


def runs(
    ctx: AppContext, project: str, name: str, limit: int, cursor: str | None
) -> TransformRunPage:
    """A transform's runs, newest first."""
    page = transforms.runs(ctx.store, project, name, limit=limit, cursor=cursor)
    return TransformRunPage(items=page.items, next_cursor=page.next_cursor)


def delete(ctx: AppContext, project: str, name: str, actor: str) -> None:
    """Delete a transform and its runs; its tables stay."""
    transforms.delete(ctx.store, project, name, actor=actor)


def lineage(ctx: AppContext, project: str, table: str, version: int | None) -> TransformLineage:
    """Where a table version came from, back through the transforms that made it."""
    return transforms.lineage(ctx.store, ctx.artifacts, project, table, version)
