"""The feature store under /api/v1/projects/{project}/features: views, point-in-time
training sets, materializing, and online reads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from starlette.convertors import Convertor, register_url_convertor

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.api.schemas.features import (
    FeatureViewApply,
    FeatureViewList,
    MaterializeRequest,
    OnlineAnswer,
    OnlineRead,
    TrainingSetCreate,
    view_path,
)
from loopml.core.datasets import DatasetVersionResult
from loopml.core.deployments import DEPLOYMENT_NAME_PATTERN
from loopml.core.errors import ValidationError
from loopml.core.features import (
    VIEW_NAME_PATTERN,
    FeatureView,
    FeatureViewApplied,
    MaterializeResult,
    SkewReport,
)
from loopml.data.features import offline, views
from loopml.data.features.materialize import materialize, read_online
from loopml.data.features.skew import MAX_SAMPLE, skew
from loopml.faces.context import Actor, Ctx

FEATURES = "/api/v1/projects/{project}/features"


class FeatureViewConvertor(Convertor[str]):
    """``{view:feature_view}`` matches only view names (no hyphen), so the online reads'
    ``/features/{view}`` never swallows ``/features/training-sets``: a GET there is the 405
    it should be, not a lookup of a view of that name."""

    regex = VIEW_NAME_PATTERN.pattern.removeprefix("^").removesuffix("$")

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("feature_view", FeatureViewConvertor())
router = APIRouter(route_class=StrictJSONRoute, tags=["features"], responses=ERROR_RESPONSES)
PROJECT = project_path("The project that owns the feature views.")
VIEW = view_path()
_MADE: dict[int | str, dict[str, Any]] = {
    200: {
        "model": DatasetVersionResult,
        "description": "The latest version already holds these rows (`created` false).",
    },
    201: {"model": DatasetVersionResult, "description": "Made (`created` true)."},
}


@router.post(FEATURES + "/views")
def apply_view(
    body: FeatureViewApply, ctx: Ctx, actor: Actor, project: str = PROJECT
) -> FeatureViewApplied:
    """Apply a view's YAML spec: checked against its source, stored as the next version
    (`created` false when unchanged)."""
    return views.apply(ctx.store, ctx.artifacts, project, body.spec, actor=actor)


@router.get(FEATURES + "/views")
def list_views(ctx: Ctx, project: str = PROJECT) -> FeatureViewList:
    """A project's feature views at their newest versions."""
    return FeatureViewList(items=views.list_views(ctx.store, project))


@router.get(FEATURES + "/views/{view}")
def get_view(
    ctx: Ctx,
    project: str = PROJECT,
    view: str = VIEW,
    version: int | None = Query(default=None, ge=1, le=10**9, description="Default: newest."),
) -> FeatureView:
    """One version of a view, with what the online store holds of it."""
    return views.get(ctx.store, project, view, version)


@router.post(FEATURES + "/views/{view}/materialize")
def materialize_view(
    body: MaterializeRequest, ctx: Ctx, actor: Actor, project: str = PROJECT, view: str = VIEW
) -> MaterializeResult:
    """Write the view's newest values per entity to the online store: only rows after the
    last run's watermark unless `full`."""
    return materialize(
        ctx.store,
        ctx.artifacts,
        ctx.online.get(),
        project,
        view,
        full=body.full,
        actor=actor,
        chunk_rows=ctx.settings.features.materialize_chunk_rows,
        spill_bytes=ctx.settings.features.materialize_spill_bytes,
    )


@router.get(FEATURES + "/views/{view}/skew")
def view_skew(
    ctx: Ctx,
    project: str = PROJECT,
    view: str = VIEW,
    deployment: str = Query(
        max_length=40,
        description="The deployment whose logged feature values are checked.",
        json_schema_extra={"pattern": DEPLOYMENT_NAME_PATTERN.pattern},
    ),
    sample: int = Query(default=1000, ge=1, le=MAX_SAMPLE, description="Newest logged rows."),
    tolerance: float = Query(default=1e-9, ge=0, lt=1, description="Relative, for numbers."),
) -> SkewReport:
    """Training/serving skew: the feature values the deployment served (its prediction
    log) against a point-in-time join from the lake for the same entities and times; the
    share that differ, per feature."""
    return skew(
        ctx.store,
        ctx.artifacts,
        project,
        view,
        deployment=deployment,
        sample=sample,
        tolerance=tolerance,
    )


@router.post(FEATURES + "/training-sets", status_code=201, responses=_MADE)
def create_training_set(
    body: TrainingSetCreate, response: Response, ctx: Ctx, actor: Actor, project: str = PROJECT
) -> DatasetVersionResult:
    """Join the views onto the entity table as of each row's time; the result is the next
    version of `dataset` (201), or its latest version with `created` false (200) when that
    holds the same rows."""
    made = offline.training_set(
        ctx.store,
        ctx.artifacts,
        project,
        body.dataset,
        entities=body.entities,
        entities_dataset=body.entities_dataset,
        entities_part=body.entities_part,
        views=body.views,
        event_time=body.event_time,
        description=body.description,
        split=body.split,
        actor=actor,
        spill_bytes=ctx.settings.features.materialize_spill_bytes,
    )
    response.status_code = 201 if made.created else 200
    return made


@router.get(FEATURES + "/{view:feature_view}")
def read_entity(
    ctx: Ctx,
    project: str = PROJECT,
    view: str = VIEW,
    entity: str = Query(max_length=500, description="The entity's key (one-key views)."),
) -> OnlineAnswer:
    """The online values of one entity of a view keyed by one column."""
    found = views.get(ctx.store, project, view)
    if len(found.spec.entities) != 1:
        raise ValidationError(
            f"feature view {view!r} is keyed by {found.spec.entities}: ask with "
            f"POST {FEATURES}/{{view}}/search and a dict of those keys per entity",
            details={"field": "entity", "keys": found.spec.entities},
        )
    entities = [{found.spec.entities[0]: entity}]
    return OnlineAnswer(
        view=view, items=read_online(ctx.store, ctx.online.get(), project, view, entities)
    )


@router.post(FEATURES + "/{view:feature_view}/search")
def read_entities(
    body: OnlineRead, ctx: Ctx, project: str = PROJECT, view: str = VIEW
) -> OnlineAnswer:
    """The online values of several entities, each a dict of the view's keys, in order."""
    items = read_online(ctx.store, ctx.online.get(), project, view, list(body.entities))
    return OnlineAnswer(view=view, items=items)
