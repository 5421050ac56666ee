"""Models: every model the viewer sees (``/models``, paged), one model with its versions,
aliases, gate reports, metrics and a version's lineage (``/models/{project}/{name}``), and
two versions side by side (``/models/{project}/{name}/compare?a=1&b=2``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from loopml import projects
from loopml.core.errors import ValidationError
from loopml.core.registry import RegisteredModel
from loopml.faces.context import MetadataStore
from loopml.portal.pages._model_view import gather_compare, gather_model
from loopml.portal.pages._picking import remember, remembered
from loopml.portal.viewer import (
    PageRoute,
    Viewer,
    ViewerDep,
    context_of,
    control_of,
    read_only,
    render,
)
from loopml.registry import service as registry

router = APIRouter(route_class=PageRoute, include_in_schema=False)
MODELS_PAGE = 50


def _number(params: Any, name: str) -> int | None:
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and 1 <= len(raw) <= 9):
        raise ValidationError(f"invalid {name} {raw[:20]!r}: expected a version number")
    return int(raw)


def _required(params: Any, name: str) -> int:
    found = _number(params, name)
    if found is None:
        raise ValidationError(f"missing {name}: pass a version number, such as {name}=1")
    return found


def _read_cursor(cursor: str) -> tuple[str, str | None]:
    project, sep, name = cursor.partition("/")
    if not sep or not project:
        raise ValidationError(f"invalid cursor {cursor[:80]!r}: follow the Next link")
    return project, name or None


def gather_models(
    store: MetadataStore,
    viewer: Viewer,
    only: str | None,
    cursor: str | None,
    last: str | None = None,
) -> tuple[list[str], list[RegisteredModel], str | None]:
    """One page of the models of every project the viewer sees (or of ``only``, else of
    ``last``, the remembered project, while the viewer sees it), by project then name; the
    cursor is ``project/last-name``."""
    visible = viewer.visible([p.name for p in projects.list_(store, limit=1000).items])
    if only:
        viewer.require(only)
    elif last in visible:
        only = last
    wanted = [only] if only else visible
    start, after = _read_cursor(cursor) if cursor else (wanted[0] if wanted else "", None)
    found: list[RegisteredModel] = []
    for project in (p for p in wanted if p >= start):
        name_cursor = after if project == start else None
        page = registry.list_models(
            store, project, limit=MODELS_PAGE - len(found) + 1, cursor=name_cursor
        )
        found += page.items
        if len(found) > MODELS_PAGE:
            break
    if len(found) > MODELS_PAGE:
        final = found[MODELS_PAGE - 1]
        return visible, found[:MODELS_PAGE], f"{final.project}/{final.name}"
    return visible, found, None


@router.get("/models")
async def models_list(request: Request, viewer: ViewerDep) -> Response:
    """Every model the viewer may see."""
    store = context_of(request).store
    asked = request.query_params.get("project")
    asked = None if asked is None else asked.strip()
    cursor = request.query_params.get("cursor", "").strip() or None
    last = remembered(request) if asked is None else None
    visible, found, next_cursor = await read_only(
        request, lambda: gather_models(store, viewer, asked or None, cursor, last)
    )
    only = asked or (last if last in visible else None)
    page = render(
        request,
        "models.html",
        viewer,
        page="models",
        projects=visible,
        only=only,
        models=found,
        cursor=cursor,
        next_cursor=next_cursor,
    )
    return remember(page, asked)


@router.get("/models/{project}/{name}")
async def model_page(request: Request, viewer: ViewerDep, project: str, name: str) -> Response:
    """One model: versions, aliases, gate reports, metrics, lineage."""
    viewer.require(project)
    ctx = context_of(request)
    control = control_of(request)
    params = request.query_params
    cursor = _number(params, "cursor")
    selected = _number(params, "version")
    view = await read_only(
        request,
        lambda: gather_model(ctx.store, control, project, name, cursor=cursor, selected=selected),
    )
    return render(request, "model.html", viewer, page="models", project=project, view=view)


@router.get("/models/{project}/{name}/compare")
async def compare_versions(
    request: Request, viewer: ViewerDep, project: str, name: str
) -> Response:
    """Two versions side by side."""
    viewer.require(project)
    a = _required(request.query_params, "a")
    b = _required(request.query_params, "b")
    store = context_of(request).store
    view = await read_only(request, lambda: gather_compare(store, project, name, a, b))
    return render(
        request, "model_compare.html", viewer, page="models", project=project, name=name, **view
    )
